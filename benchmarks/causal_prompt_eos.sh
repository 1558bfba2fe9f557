#!/usr/bin/env bash
# Issue 18: why does the decoder-only every_item mode learn less per target than the T5? Suspect: its inner
# targets follow the previous item directly, the last one follows </s>. Same run with the </s> (prompt_eos=true,
# every release so far) and without it (model.causal.prompt_eos=false: the last target in the inner targets'
# context), equal budgets (300 steps x 256 windows, ~3.2 epochs: the budget of the earlier decoder-only runs), same seeds; test on the first 5,000 users:
#
#   GENREC_DATA_DIR=../shared/data bash benchmarks/causal_prompt_eos.sh [TOKENIZER_DIR] [OUT_DIR]
#   python benchmarks/paired_runs.py --baseline eos eos=OUT/eos_s42,... no_eos=OUT/no_eos_s42,...
#
# Each finished run leaves metrics.json and is skipped on a rerun; an unfinished one resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
TOK=${1:-runs/beauty_full/tokenizer}
OUT=${2:-runs/causal_prompt_eos}
export OMP_NUM_THREADS=${THREADS:-1}
COMMON=(tokenizer_dir="$TOK" training.epochs=100 training.max_steps=300 training.max_train_minutes=null training.warmup_steps=100
        training.eval_every_epochs=100 training.checkpoint_every_minutes=5 eval.valid_max_users=1000 eval.final_validation=false
        eval.test_max_users=5000)
mkdir -p "$OUT"
for seed in ${SEEDS:-42}; do
  for arm in no_eos eos; do
    run="$OUT/${arm}_s$seed"
    eos=$([ "$arm" = eos ] && echo true || echo false)
    [ -f "$run/metrics.json" ] || python recipes/train_genrec.py --config recipes/configs/genrec_beauty_causal.yaml --resume "${COMMON[@]}" \
        model.causal.prompt_eos="$eos" training.seed="$seed" output_dir="$run" 2>&1 | grep -v "it/s\]" >> "$run.log"
  done
done
