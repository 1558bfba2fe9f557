#!/usr/bin/env bash
# Issue 16: the choices the converged re-implementations disagree on, measured on short runs of the converged
# recipe (recipes/configs/genrec_beauty_t5.yaml) before its long run keeps them. Equal examples per arm
# (256,000 prefix examples, ~2 epochs), 10% warmup, one seed, the same RQ-VAE tokenizer; test ranking of the
# first 5,000 test users with per-user metrics, so that arms are compared user by user:
#
#   GENREC_DATA_DIR=../shared/data bash benchmarks/anchor_choices.sh [TOKENIZER_DIR] [OUT_DIR]
#   python benchmarks/paired_runs.py --baseline base base=OUT/base no_user_token=OUT/no_user_token \
#       batch_1024=OUT/batch_1024
#
# Arms: base (user token, batch 256, Adam 1e-3 constant: the converged recipe), no_user_token (TIGER's hashed
# user token dropped: GRID and RQ-VAE-Recommender have none), batch_1024 (4x the batch at the same LR and
# the same examples, as GRID's large batches; accumulated, see below), dropout_0 (no dropout: TIGER 0.1, GRID 0.15;
# PERF_NOTES measured dropout at ~25% of a CPU training step), no_dedup_loss (no user token, and the dedup code left
# out of the training loss, as phonism/genrec: compare it with no_user_token), item_pooled (no user token, the encoder
# over one position per history item, ~2.6x cheaper steps on CPU: compare it with no_user_token) and item_pooled_2500
# (the same for 2,500 steps: about no_user_token's training CPU time). Each finished arm leaves metrics.json and
# is skipped on a rerun; an unfinished one resumes from its newest checkpoint. ARMS="a b" runs only those (e.g. two
# shells side by side, one arm each); EXTRA="k=v ..." adds settings to every arm (speed only, e.g.
# EXTRA="training.resident_batches=true training.fast_dropout=true"; arms compared with each other need the same EXTRA).
set -euo pipefail
cd "$(dirname "$0")/.."
TOK=${1:-runs/beauty_full/tokenizer}
OUT=${2:-runs/anchor_choices}
export OMP_NUM_THREADS=${THREADS:-1}
COMMON=(tokenizer_dir="$TOK" training.epochs=100 training.max_train_minutes=null training.eval_every_epochs=100
        training.eval_every_steps=null training.checkpoint_every_minutes=5 eval.final_validation=false
        eval.test_max_users=5000 num_user_tokens=2000)  # the recipe's user token when measured
mkdir -p "$OUT"
read -ra EXTRA_ARGS <<< "${EXTRA:-}"
ARMS=" ${ARMS:-base no_user_token batch_1024 dropout_0 no_dedup_loss item_pooled item_pooled_2500} "
run_arm() {  # name, overrides...
  [[ $ARMS == *" $1 "* ]] || return 0
  local run="$OUT/$1"; shift
  [ -f "$run/metrics.json" ] || python recipes/train_genrec.py --config recipes/configs/genrec_beauty_t5.yaml --resume \
      "${COMMON[@]}" "${EXTRA_ARGS[@]}" output_dir="$run" "$@" 2>&1 | grep -v "it/s\]" >> "$run.log"
}
run_arm base training.max_steps=1000 training.warmup_steps=100
run_arm no_user_token training.max_steps=1000 training.warmup_steps=100 num_user_tokens=0
# 1,024 examples per step as 4 accumulated micro-batches of 256: one batch of 1,024 held 17 GB of activations
# (killed by the OOM killer on this 24 GB machine beside a paused run); the optimizer sees the same steps.
run_arm batch_1024 training.max_steps=250 training.warmup_steps=25 training.batch_size=256 training.grad_accum_steps=4
run_arm dropout_0 training.max_steps=1000 training.warmup_steps=100 model.dropout_rate=0
run_arm no_dedup_loss training.max_steps=1000 training.warmup_steps=100 num_user_tokens=0 dedup_loss=false
run_arm item_pooled training.max_steps=1000 training.warmup_steps=100 num_user_tokens=0 model.encoder=item_pooled
run_arm item_pooled_2500 training.max_steps=2500 training.warmup_steps=250 num_user_tokens=0 model.encoder=item_pooled
