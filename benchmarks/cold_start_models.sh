#!/usr/bin/env bash
# The models of the cold-start benchmark (issue 21): on Amazon Beauty under the cold-start protocol (5% of the
# items, seed 0, held out of every tokenizer and recommender), the RQ-VAE, QuaSID and AdaSID tokenizers (100
# epochs) and one recommender on each (the small every-target T5 of compare_beauty.yaml's size: 2+2 layers,
# d_model 128, the same for every tokenizer). Then benchmarks/cold_start.py ranks the test users with every
# cold-start method:
#
#   GENREC_DATA_DIR=../shared/data bash benchmarks/cold_start_models.sh
#   python benchmarks/cold_start.py --runs runs/cold_start --out benchmarks/results/cold_start
#
# BUDGET=short (default): 1,000 steps x 64 history windows, constant learning rate (runs/cold_start).
# BUDGET=long: 6,000 steps x 64 windows, the last 1,500 a cosine decay to 0 (runs/cold_start_long), on the
# short budget's tokenizers (TOKENIZER_RUNS=runs/cold_start): a recommender well ahead of Semantic-KNN on warm
# users, which the cold-start methods need (see BENCHMARKS.md).
# Rerun after an interruption: finished tokenizers and recommenders are kept, an unfinished recommender resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${GENREC_DATA_DIR:?set GENREC_DATA_DIR to the folder holding amazon_beauty/}"
BUDGET=${BUDGET:-short}
case $BUDGET in
  short) OUT=${OUT:-runs/cold_start} BUDGET_SETTINGS=() ;;
  long) OUT=${OUT:-runs/cold_start_long}
        BUDGET_SETTINGS=(training.max_steps=6000 training.lr_scheduler=wsd training.decay_steps=1500
                         training.warmup_steps=500 training.eval_every_steps=1500 eval.valid_max_users=3000
                         training.resident_batches=true training.fast_dropout=true) ;;
  *) echo "unknown BUDGET $BUDGET (short | long)" >&2; exit 2 ;;
esac
TOKENIZER_RUNS=${TOKENIZER_RUNS:-$OUT}
export OMP_NUM_THREADS=${THREADS:-1}
source benchmarks/cold_start_recipe.sh  # COLD (the protocol) and RECOMMENDER (the recipe)
NAMES=${TOKENIZERS:-rqvae quasid adasid}  # a subset, e.g. to train two tokenizers' models side by side
for name in $NAMES; do
  [ -f "$TOKENIZER_RUNS/$name/tokenizer/metrics.json" ] || python recipes/train_tokenizer.py \
      --config "recipes/configs/tokenizer_$name.yaml" "${COLD[@]}" epochs=100 log_every=0 \
      output_dir="$TOKENIZER_RUNS/$name/tokenizer"
done
for name in $NAMES; do
  [ -f "$OUT/$name/genrec/metrics.json" ] || python recipes/train_genrec.py "${RECOMMENDER[@]}" --resume \
      "${BUDGET_SETTINGS[@]}" tokenizer_dir="$TOKENIZER_RUNS/$name/tokenizer" output_dir="$OUT/$name/genrec"
done
