#!/usr/bin/env bash
# T5 vs decoder-only vs LoRA on Amazon Beauty: same tokenizer, split, decoding and a fixed CPU budget.
#
#   bash benchmarks/beauty_model_types.sh [TOKENIZER_DIR] [OUT_DIR]
#
# Every model sees the same number of training examples (STEPS x 256 for t5/causal); the LoRA
# run has a wall-time budget instead (its rows carry item titles, ~10x longer) and starts from the
# stand-in text LM that benchmarks/pretrain_text_lm.py trains on the item texts (no pretrained LM is
# reachable offline). Test metrics use every test user. Each finished run leaves metrics.json and
# is skipped on a rerun. Set THREADS to pin torch threads (e.g. 1 while other jobs run).
set -euo pipefail
TOK=${1:-runs/beauty/tokenizer_hf}
OUT=${2:-runs/beauty/model_types}
STEPS=${STEPS:-300}
LORA_MINUTES=${LORA_MINUTES:-8}
LM_MINUTES=${LM_MINUTES:-5}
export OMP_NUM_THREADS=${THREADS:-2} MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=268435456
COMMON=(tokenizer_dir="$TOK" training.epochs=100 training.eval_every_epochs=100 eval.valid_max_users=1000)
mkdir -p "$OUT"
# causal_every: the decoder-only model with loss on every item of a history window (model.causal.train_targets).
for kind in t5 causal causal_every; do
  cfg=recipes/configs/genrec_beauty.yaml; extra=()
  [ "$kind" != t5 ] && cfg=recipes/configs/genrec_beauty_causal.yaml
  [ "$kind" = causal ] && extra=(model.causal.train_targets=last)
  [ "$kind" = causal_every ] && extra=(model.causal.train_targets=every_item)
  [ -f "$OUT/$kind/metrics.json" ] || python recipes/train_genrec.py --config "$cfg" "${COMMON[@]}" "${extra[@]}" output_dir="$OUT/$kind" \
      training.max_steps="$STEPS" training.max_train_minutes=null 2>&1 | grep -v "it/s\]" > "$OUT/$kind.log"
done
[ -f "$OUT/text_lm/config.json" ] || python benchmarks/pretrain_text_lm.py --dataset amazon_beauty --out "$OUT/text_lm" --minutes "$LM_MINUTES" > "$OUT/text_lm.log" 2>&1
# No allocator settings for LoRA: its long variable-length rows grew a never-trimmed heap to 24 GB (OOM).
# A LoRA run stopped during its own (slow) test pass is finished by
#   python recipes/evaluate_genrec.py --run "$OUT/lora" --split test --out "$OUT/lora/eval_test.json"
[ -f "$OUT/lora/metrics.json" ] || [ -f "$OUT/lora/eval_test.json" ] || env -u MALLOC_MMAP_MAX_ -u MALLOC_TRIM_THRESHOLD_ -u MALLOC_TOP_PAD_ python recipes/train_genrec.py --config recipes/configs/genrec_beauty_lora.yaml "${COMMON[@]}" \
    output_dir="$OUT/lora" model.lora.pretrained="$OUT/text_lm" training.max_train_minutes="$LORA_MINUTES" eval.batch_size=16 \
    2>&1 | grep -v "it/s\]" > "$OUT/lora.log"
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| model | parameters trained | steps | train min | test R@5 | N@5 | R@10 | N@10 | test users/s |")
print("|---|---|---|---|---|---|---|---|---|")
for kind in ("t5", "causal", "causal_every", "lora"):
    p, e = out / kind / "metrics.json", out / kind / "eval_test.json"
    if p.exists():
        m = json.loads(p.read_text()); t = m["test"]; tm = m["timings"]
        steps, minutes, speed = m["steps"], f"{tm['train_seconds'] / 60:.1f}", tm["test_users"] / tm["test_eval_seconds"]
    elif e.exists():  # evaluated by evaluate_genrec.py after the run stopped
        m = json.loads(e.read_text()); t = m["metrics"]
        steps, minutes, speed = "", "", m["users_per_second"]
    else:
        continue
    print(f"| {kind} | | {steps} | {minutes} | {t['recall@5']:.4f} | {t['ndcg@5']:.4f} | {t['recall@10']:.4f} | "
          f"{t['ndcg@10']:.4f} | {speed:.0f} |")
PY
