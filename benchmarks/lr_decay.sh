#!/usr/bin/env bash
# How far is a constant-learning-rate run from its converged quality? Branch it into a learning-rate decay
# (warmup-stable-decay: the constant schedule, then a cosine to 0 over DECAY steps) and validate along the way.
# The long Beauty runs (benchmarks/efficient_training.sh) train at a constant 1e-3 like the converged
# re-implementations; a short decay from one of their checkpoints shows what that checkpoint is worth.
#
#   GENREC_DATA_DIR=../shared/data nohup bash benchmarks/lr_decay.sh ARM CHECKPOINT [DECAY] [CONSTANT] > decay.log 2>&1 &
#
# ARM: plain | every_item | every_item_dropout0 (the settings of that arm in efficient_training.sh); CHECKPOINT: a checkpoint of
# that arm's run (copy it first if the run still trains: it keeps only its newest); DECAY: decay steps (1500);
# CONSTANT: steps at the constant rate before the decay starts (0).
# Writes runs/beauty_full/<arm>_decay<DECAY>_from<step the decay starts at>/ (learning_curve.csv, metrics.json with the test ranking of
# all users). Rerun the same command to continue after an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${GENREC_DATA_DIR:?set GENREC_DATA_DIR to the folder holding amazon_beauty/}"
ARM=$1 CHECKPOINT=$2 DECAY=${3:-1500} CONSTANT=${4:-0}
OUT=${OUT:-runs/beauty_full}
export OMP_NUM_THREADS=${THREADS:-1} MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=268435456
START=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['steps'])" "$CHECKPOINT/trainer_state.json")
DECAY_START=$((START + CONSTANT))
case $ARM in
  plain) SETTINGS=() ;;
  every_item) SETTINGS=(model.encoder=causal model.train_targets=every_item training.batch_size=64
                        training.warmup_steps=500) ;;
  every_item_dropout0) SETTINGS=(model.encoder=causal model.train_targets=every_item training.batch_size=64
                                 training.warmup_steps=500 model.dropout_rate=0) ;;
  *) echo "unknown arm $ARM (plain | every_item | every_item_dropout0)" >&2; exit 2 ;;
esac
python recipes/train_genrec.py --config recipes/configs/genrec_beauty_t5.yaml tokenizer_dir="$OUT/tokenizer" \
    num_user_tokens=2000 --branch-from "$CHECKPOINT" output_dir="$OUT/${ARM}_decay${DECAY}_from${DECAY_START}" "${SETTINGS[@]}" \
    training.lr_scheduler=wsd training.decay_steps="$DECAY" training.max_steps=$((DECAY_START + DECAY)) \
    training.eval_every_steps=$((DECAY / 3)) training.early_stopping_patience=null \
    training.resident_batches=true training.fast_dropout=true eval.final_validation=false  # test: all users
