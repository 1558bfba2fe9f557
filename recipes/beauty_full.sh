#!/usr/bin/env bash
# The converged Amazon Beauty run, end to end and resumable (recipes/configs/genrec_beauty_full.yaml):
#   1. text embeddings (cached) -> RQ-VAE tokenizer (skipped when OUT/tokenizer holds a finished one),
#   2. TIGER-size T5 trained until validation NDCG@10 stops improving, checkpointed every 5 minutes,
#   3. full-catalogue constrained beam search on all 22,363 test users -> OUT/genrec/metrics.json,
#   4. the learning-rate decay: the constant-LR run's final checkpoint branched into a cosine decay to 0 over DECAY
#      steps (default 1500; DECAY=0 skips it), then tested the same way -> OUT/genrec_decay/metrics.json. On Beauty a
#      1,500-step decay from the plain run's step 6,000 raised test NDCG@10 by 14% (BENCHMARKS.md, sixth session).
# Rerun the same command after an interruption: it continues from the newest checkpoint (--resume).
# Hours on 2 CPU cores: run it in the background, e.g.
#   GENREC_DATA_DIR=../shared/data nohup bash recipes/beauty_full.sh > beauty_full.log 2>&1 &
# THREADS (default: all cores) sets torch's threads; extra arguments are train_genrec.py overrides.
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
DECAY=${DECAY:-1500}
if [ "$DECAY" -gt 0 ]; then
    FINAL=$(ls -d "$OUT"/genrec/checkpoints/step-* | sort | tail -n 1)  # names are zero-padded: sorted = by step
    START=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['steps'])" "$FINAL/trainer_state.json")
    python recipes/train_genrec.py --config recipes/configs/genrec_beauty_full.yaml tokenizer_dir="$OUT/tokenizer" \
        output_dir="$OUT/genrec_decay" --branch-from "$FINAL" "$@" training.lr_scheduler=wsd \
        training.decay_steps="$DECAY" training.max_steps=$((START + DECAY)) training.eval_every_steps=$((DECAY / 3)) \
        training.early_stopping_patience=null  # after "$@": the decay's own settings win
    cat "$OUT/genrec_decay/metrics.json"
fi
