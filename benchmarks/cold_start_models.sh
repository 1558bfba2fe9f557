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
COLD=(cold_item_fraction=0.05 cold_item_seed=0)
for name in rqvae quasid adasid; do
  [ -f "$OUT/$name/tokenizer/metrics.json" ] || python recipes/train_tokenizer.py --config "recipes/configs/tokenizer_$name.yaml" \
      "${COLD[@]}" epochs=100 log_every=0 output_dir="$OUT/$name/tokenizer"
done
for name in rqvae quasid adasid; do
  [ -f "$OUT/$name/genrec/metrics.json" ] || python recipes/train_genrec.py --config recipes/configs/genrec_beauty_full.yaml --resume \
      "${COLD[@]}" tokenizer_dir="$OUT/$name/tokenizer" output_dir="$OUT/$name/genrec" \
      model.num_layers=2 model.num_decoder_layers=2 model.num_heads=4 model.d_kv=32 model.d_ff=512 \
      model.encoder=causal model.train_targets=every_item training.batch_size=64 training.max_steps=1000 \
      training.warmup_steps=200 training.eval_every_steps=1000 training.early_stopping_patience=null \
      eval.valid_max_users=1000 eval.final_validation=false
done
