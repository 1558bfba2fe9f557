#!/usr/bin/env bash
# Plain T5 (one target per prefix example) vs the every-target T5 (a causal encoder, every item of a history
# window a target in one pass) on Amazon Beauty, each trained to convergence with the converged recipe
# (recipes/configs/genrec_beauty_t5.yaml), then compared by validation NDCG@10 against training CPU seconds:
#
#   GENREC_DATA_DIR=../shared/data nohup bash benchmarks/efficient_training.sh > efficient.log 2>&1 &
#
# Hours on 2 CPU cores (each run takes one core: THREADS=1 by default, both run side by side); rerun the
# same command after an interruption: every run continues from its newest checkpoint (logs are appended to).
# Writes benchmarks/results/efficient_training/ (summary.json, curves.csv, curves.png). ARMS="plain every_item" (say)
# trains only those runs now; EXTRA adds settings to every arm (below).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${GENREC_DATA_DIR:?set GENREC_DATA_DIR to the folder holding amazon_beauty/}"
OUT=${OUT:-runs/beauty_full}
export OMP_NUM_THREADS=${THREADS:-1} MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=268435456
[ -f "$OUT/tokenizer/metrics.json" ] || python recipes/train_tokenizer.py --config recipes/configs/tokenizer_rqvae.yaml \
    output_dir="$OUT/tokenizer"
# EXTRA: settings added to every arm, e.g. EXTRA="training.resident_batches=true training.fast_dropout=true"
# (neither changes the objective, only the speed: a resumed run accepts them).
read -ra EXTRA_ARGS <<< "${EXTRA:-}"
RECIPE=(recipes/train_genrec.py --config recipes/configs/genrec_beauty_t5.yaml tokenizer_dir="$OUT/tokenizer" --resume
        num_user_tokens=2000 "${EXTRA_ARGS[@]}")  # the recipe's user token when measured
# ARMS: which runs train now (all by default, side by side; CPU seconds keep the curves comparable when they share cores).
ARMS=" ${ARMS:-plain every_item every_item_dropout0} "
EVERY=(model.encoder=causal model.train_targets=every_item training.batch_size=64 training.warmup_steps=500
       training.eval_every_steps=500)
[[ $ARMS == *" plain "* ]] && python "${RECIPE[@]}" output_dir="$OUT/genrec" >> "$OUT/plain.log" 2>&1 &
# every_item: batches of 64 windows (~350 targets, ~1.4x the plain batch's 256), 500 warmup steps, validation
# every 500 steps (~1.4 epochs); everything else as the plain run.
[[ $ARMS == *" every_item "* ]] && python "${RECIPE[@]}" output_dir="$OUT/genrec_every" "${EVERY[@]}" >> "$OUT/every.log" 2>&1 &
# every_item_dropout0: the same without dropout (at 256k examples, dropout 0 beat 0.1 by +18% test NDCG@10, p 0.04,
# benchmarks/anchor_choices.sh; and a step without dropout is cheaper): does it hold over a long run?
[[ $ARMS == *" every_item_dropout0 "* ]] && python "${RECIPE[@]}" output_dir="$OUT/genrec_every_d0" "${EVERY[@]}" \
    model.dropout_rate=0 >> "$OUT/every_d0.log" 2>&1 &
wait
python benchmarks/efficient_training.py plain="$OUT/genrec" every_item="$OUT/genrec_every" \
    every_item_dropout0="$OUT/genrec_every_d0" --out benchmarks/results/efficient_training
