#!/usr/bin/env bash
# The models of the cold-start benchmark (issue 21): on Amazon Beauty under the cold-start protocol (5% of the
# items, seed 0, held out of every tokenizer and recommender), the RQ-VAE, QuaSID and AdaSID tokenizers (100
# epochs) and one recommender on each (the small every-target T5 of compare_beauty.yaml's size: 2+2 layers,
# d_model 128; 1,000 steps x 64 history windows, the same for every tokenizer). Then
# benchmarks/cold_start.py ranks the test users with every cold-start method:
#
#   GENREC_DATA_DIR=../shared/data bash benchmarks/cold_start_models.sh
#   python benchmarks/cold_start.py --runs runs/cold_start --out benchmarks/results/cold_start
#
# Rerun after an interruption: finished tokenizers and recommenders are kept, an unfinished recommender resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${GENREC_DATA_DIR:?set GENREC_DATA_DIR to the folder holding amazon_beauty/}"
OUT=${OUT:-runs/cold_start}
export OMP_NUM_THREADS=${THREADS:-1}
source benchmarks/cold_start_recipe.sh  # COLD (the protocol) and RECOMMENDER (the recipe)
for name in rqvae quasid adasid; do
  [ -f "$OUT/$name/tokenizer/metrics.json" ] || python recipes/train_tokenizer.py --config "recipes/configs/tokenizer_$name.yaml" \
      "${COLD[@]}" epochs=100 log_every=0 output_dir="$OUT/$name/tokenizer"
done
for name in rqvae quasid adasid; do
  [ -f "$OUT/$name/genrec/metrics.json" ] || python recipes/train_genrec.py "${RECOMMENDER[@]}" --resume \
      tokenizer_dir="$OUT/$name/tokenizer" output_dir="$OUT/$name/genrec"
done
