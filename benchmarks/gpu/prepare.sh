#!/usr/bin/env bash
# Run here (with the package registry) before a GPU window: puts into .gpu/ (git-ignored) what the GPU machine
# lacks. That machine has no network and its own Python 3.12 image (torch, transformers, accelerate, peft,
# sentence-transformers, pyarrow, pandas, xxhash ...; no `datasets`), and ../shared does not travel.
#   .gpu/whl/        wheels: datasets and the two of its needs the image lacks (dill, multiprocess); transformers at
#                    the version tested here (the image's 5.17 predates it)
#   .gpu/data/       the Amazon Beauty dataset folder
#   .gpu/tokenizer/  the RQ-VAE tokenizer trained here (OUT/tokenizer of recipes/beauty_full.sh)
#   .gpu/compare/    rqvae/, quasid/, adasid/: the cold-start-protocol tokenizers of benchmarks/cold_start_models.sh
# Then, with the device tool: run(command="bash benchmarks/gpu/run.sh long", carry=[".gpu"], timeout_s=590) (the
# modes: benchmarks/gpu/job.py), and here: python benchmarks/gpu/report.py <files_at> --out benchmarks/results/...
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${GENREC_DATA_DIR:?set GENREC_DATA_DIR (e.g. ../shared/data)}"
TOKENIZER=${1:-runs/beauty_full/tokenizer}
COMPARE=${2:-runs/cold_start}  # <COMPARE>/<name>/tokenizer
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
du -sh .gpu
