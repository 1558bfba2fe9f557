#!/usr/bin/env bash
# The main job on Amazon Beauty with a small CPU budget (~15 min on 2 cores, ~2 more for the first embeddings):
#   1. text embeddings (cached) -> RQ-VAE tokenizer (3 x 256 codes + dedup code)
#   2. TIGER-size T5 trained for at most 10 minutes, validated on 1,000 users,
#   3. full-catalogue constrained beam search on all 22,363 test users -> runs/beauty/genrec/metrics.json
# Extra arguments are passed to train_genrec.py as overrides, e.g. training.max_train_minutes=60.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${GENREC_DATA_DIR:?set GENREC_DATA_DIR to the folder holding amazon_beauty/ (e.g. ../shared/data)}"
OUT=${OUT:-runs/beauty}
python recipes/train_tokenizer.py --config recipes/configs/tokenizer_rqvae.yaml output_dir="$OUT/tokenizer"
python recipes/train_genrec.py --config recipes/configs/genrec_beauty.yaml tokenizer_dir="$OUT/tokenizer" \
    output_dir="$OUT/genrec" training.epochs=1 training.max_train_minutes=10 eval.valid_max_users=1000 "$@"
cat "$OUT/genrec/metrics.json"
