#!/usr/bin/env bash
# On the GPU machine (see prepare.sh): install the carried wheels and genrec itself (no network), then the job.
#   bash benchmarks/gpu/run.sh full|short|compare|ablate [--compile]  -> $OUT/results.json, $OUT/per_user_*.json, $OUT/job.log
set -euo pipefail
cd "$(dirname "$0")/../.."
MODE=${1:-full}
OUT=${OUT:-/tmp/genrec_gpu_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target /tmp/site .
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/job.log" || true
python3 benchmarks/gpu/job.py --mode "$MODE" --data .gpu/data --tokenizer .gpu/tokenizer --out "$OUT" "${@:2}" 2>&1 \
    | grep --line-buffered -v "it/s\]$" | tee -a "$OUT/job.log"
