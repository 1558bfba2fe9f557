#!/usr/bin/env bash
# The main job on Amazon Beauty, a smoke run with a small fixed budget (~20 min on 2 free cores, ~3 more for
# the first embeddings; the converged run is recipes/beauty_full.sh):
#   1. text embeddings (cached) -> RQ-VAE tokenizer (3 x 256 codes + dedup code; the same codes for a seed),
#   2. TIGER-size T5 trained for 400 optimizer steps of 256 examples (100 warmup), validated on 1,000 users;
#      a fixed step count, not a wall-clock budget, so a slower or busier machine gets the same model, later,
#   3. full-catalogue constrained beam search on all 22,363 test users -> runs/beauty/genrec/metrics.json
#      (expected: test NDCG@10 about 0.01, a quarter of TIGER's: the model is far from converged).
# Extra arguments are passed to train_genrec.py as overrides, e.g. training.max_steps=1000.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${GENREC_DATA_DIR:?set GENREC_DATA_DIR to the folder holding amazon_beauty/ (e.g. ../shared/data)}"
OUT=${OUT:-runs/beauty}
python recipes/train_tokenizer.py --config recipes/configs/tokenizer_rqvae.yaml output_dir="$OUT/tokenizer"
python recipes/train_genrec.py --config recipes/configs/genrec_beauty.yaml tokenizer_dir="$OUT/tokenizer" \
    output_dir="$OUT/genrec" training.epochs=1 training.max_steps=400 training.warmup_steps=100 training.max_train_minutes=null \
    eval.valid_max_users=1000 "$@"
cat "$OUT/genrec/metrics.json"
