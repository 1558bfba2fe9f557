#!/usr/bin/env bash
# Decoder-only on Amazon Beauty, loss on the target only vs on every item of a history window
# (model.causal.train_targets), more training seeds beside the seed-42 runs of beauty_model_types.sh:
#
#   bash benchmarks/beauty_causal_targets.sh [TOKENIZER_DIR] [OUT_DIR]
#   python benchmarks/paired_runs.py --baseline last last=OUT/../causal,OUT/causal_last_s1,OUT/causal_last_s2 \
#       every_item=OUT/../causal_every,OUT/causal_every_item_s1,OUT/causal_every_item_s2
#
# Same budget as beauty_model_types.sh (300 steps x 256); no full validation pass; test on every user.
# Each finished run leaves metrics.json and is skipped on a rerun. SEEDS, THREADS as environment variables.
set -euo pipefail
TOK=${1:-runs/beauty/tokenizer_hf}
OUT=${2:-runs/beauty/model_types/seeds}
export OMP_NUM_THREADS=${THREADS:-2} MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=268435456
COMMON=(tokenizer_dir="$TOK" training.epochs=100 training.eval_every_epochs=100 eval.valid_max_users=1000 training.max_steps=300
        training.max_train_minutes=null eval.final_validation=false eval.batch_size=32)
mkdir -p "$OUT"
for seed in ${SEEDS:-1 2}; do
  for targets in every_item last; do
    run="$OUT/causal_${targets}_s$seed"
    [ -f "$run/metrics.json" ] || python recipes/train_genrec.py --config recipes/configs/genrec_beauty_causal.yaml "${COMMON[@]}" \
        model.causal.train_targets="$targets" training.seed="$seed" output_dir="$run" 2>&1 | grep -v "it/s\]" > "$run.log"
  done
done
