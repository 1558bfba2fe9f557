#!/usr/bin/env bash
# The converged Amazon Beauty run, end to end and resumable (recipes/configs/genrec_beauty_full.yaml):
#   1. text embeddings (cached) -> RQ-VAE tokenizer (skipped when OUT/tokenizer holds a finished one),
#   2. the item-pooled TIGER-size T5, 24,000 steps x 256 with a final learning-rate decay, checkpointed every 5 minutes,
#   3. full-catalogue constrained beam search on all 22,363 test users with the best validation step's weights
#      -> OUT/genrec/metrics.json (and learning_curve.csv/.png beside it).
# Rerun the same command after an interruption: it continues from the newest checkpoint (--resume).
# About 82 minutes of training on 2 free cores (0.20 s per step), about 3 hours on one; run it in the background, e.g.
#   GENREC_DATA_DIR=../shared/data nohup bash recipes/beauty_full.sh > beauty_full.log 2>&1 &
# THREADS (default: the free cores) sets torch's threads; extra arguments are train_genrec.py overrides
# (e.g. training.seed=43). The plain T5 of the earlier results: recipes/configs/genrec_beauty_t5.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${GENREC_DATA_DIR:?set GENREC_DATA_DIR to the folder holding amazon_beauty/ (e.g. ../shared/data)}"
OUT=${OUT:-runs/beauty_full}
[ -n "${THREADS:-}" ] && export OMP_NUM_THREADS=$THREADS
# glibc allocator settings: 1.7x faster T5 training steps on CPU (README, Notes).
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=268435456
[ -f "$OUT/tokenizer/metrics.json" ] || python recipes/train_tokenizer.py --config recipes/configs/tokenizer_rqvae.yaml \
    output_dir="$OUT/tokenizer"
python recipes/train_genrec.py --config recipes/configs/genrec_beauty_full.yaml tokenizer_dir="$OUT/tokenizer" \
    output_dir="$OUT/genrec" --resume "$@"
cat "$OUT/genrec/metrics.json"
