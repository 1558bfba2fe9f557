#!/usr/bin/env bash
# Run here (with the package registry) before a GPU window: puts into .gpu/ (git-ignored) what the GPU machine
# lacks. That machine has no network and its own Python 3.12 image (torch, transformers, accelerate, peft,
# sentence-transformers, pyarrow, pandas, xxhash ...; no `datasets`), and ../shared does not travel.
#   .gpu/whl/        wheels: datasets and the two of its needs the image lacks (dill, multiprocess); transformers at
#                    the version tested here (the image's 5.17 predates it)
#   .gpu/data/       the Amazon Beauty dataset folder
#   .gpu/tokenizer/  the RQ-VAE tokenizer trained here (OUT/tokenizer of recipes/beauty_full.sh)
#   .gpu/compare/    rqvae/, quasid/, adasid/: the cold-start-protocol tokenizers of benchmarks/cold_start_models.sh
#   .gpu/continue/   (with a third argument: a run folder unpacked from an earlier window's run_<label>.tar.gz.*) its
#                    pre_decay/ weights, which `run.sh long --init-from .gpu/continue` trains on (~18 MB; the
#                    working tree, .gpu/ included, must stay under the device tool's 64 MiB)
# Then, with the device tool: run(command="bash benchmarks/gpu/run.sh long", carry=[".gpu"], timeout_s=590) (the
# modes: benchmarks/gpu/job.py), and here: python benchmarks/gpu/report.py <files_at> --out benchmarks/results/...
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${GENREC_DATA_DIR:?set GENREC_DATA_DIR (e.g. ../shared/data)}"
TOKENIZER=${1:-runs/beauty_full/tokenizer}  # with CONTINUE: give $CONTINUE/tokenizer (the SIDs its weights know)
COMPARE=${2:-runs/cold_start}  # <COMPARE>/<name>/tokenizer
CONTINUE=${3:-}                # e.g. runs/gpu_long/main_seed42 (cat run_main_seed42.tar.gz.* | tar xz -C runs/gpu_long)
grep -qxF "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu/whl \
    datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 transformers==5.24.0  # the versions pyproject resolves to here
cp -r "$GENREC_DATA_DIR/amazon_beauty" .gpu/data
cp -r "$TOKENIZER" .gpu/tokenizer
for name in rqvae quasid adasid; do
    mkdir -p .gpu/compare && cp -r "$COMPARE/$name/tokenizer" ".gpu/compare/$name"
done
if [ -n "$CONTINUE" ]; then
    [ -f "$CONTINUE/pre_decay/model.safetensors" ] || { echo "$CONTINUE/pre_decay/model.safetensors is missing" >&2; exit 2; }
    cmp -s "$CONTINUE/tokenizer/sid_table.safetensors" .gpu/tokenizer/sid_table.safetensors \
        || { echo "$CONTINUE was trained on another tokenizer: give $CONTINUE/tokenizer as the first argument" >&2; exit 2; }
    cp -r "$CONTINUE/pre_decay" .gpu/continue
fi
du -sh .gpu
