"""Tokenizer metrics by input modality (docs/multimodal.md): text vs text + attributes vs attributes.

    OMP_NUM_THREADS=1 GENREC_DATA_DIR=../shared/data python benchmarks/multimodal_tokenizers.py            # every run, then the table
    OMP_NUM_THREADS=1 GENREC_DATA_DIR=../shared/data python benchmarks/multimodal_tokenizers.py --table-only

Runs ``recipes/train_tokenizer.py`` once per variant, one at a time, each in its own process (log:
``<out>/<name>.log``), skipping variants whose ``metrics.json`` exists (resumable), then writes
``benchmarks/results/multimodal_tokenizers.md`` (and ``.json``).

Every variant's embedding-based metric (harmful near-collisions: pairs with text cosine < 0.5 sharing
>= L-1 codes) is recomputed here from the saved SID table in one reference space per dataset, the
MiniLM embedding of the text-only baseline's text (Beauty: the default title/brand/categories text;
MovieLens: the title), so the column compares like with like whatever a variant quantised or gated on.
``recon_error`` is each quantiser's own reconstruction error of its own input, not comparable across
inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
BEAUTY = ["dataset=amazon_beauty", "epochs=100", "seed=0"]
ML = ["dataset=ml_100k", "epochs=100", "seed=0", "codebook_sizes=[64,64,64]", "on_empty_text=item_id"]
TITLE = "text_template='Title: {title}.'"
# name -> (dataset key, config, overrides, input description)
VARIANTS = {
    "beauty/rqvae_text": ("beauty", "tokenizer_rqvae.yaml", BEAUTY, "text"),
    "beauty/rqvae_text_attrs": ("beauty", "tokenizer_rqvae_text_attrs.yaml", BEAUTY, "text + attributes (concat)"),
    "beauty/rqvae_text_attrs_w05": ("beauty", "tokenizer_rqvae_text_attrs.yaml", [*BEAUTY, "fusion.weights.attrs=0.5"],
                                    "text + attributes (concat, attributes weight 0.5)"),
    "beauty/rqvae_attrs": ("beauty", "tokenizer_rqvae_attrs.yaml", BEAUTY, "attributes"),
    "beauty/rqvae_text_attrs_projection": ("beauty", "tokenizer_rqvae_text_attrs.yaml", [*BEAUTY, "fusion.type=projection", "fusion.dim=256"],
                                           "text + attributes (projection, 256-d)"),
    "beauty/adasid_text": ("beauty", "tokenizer_adasid.yaml", BEAUTY, "text"),
    "beauty/adasid_text_attrs": ("beauty", "tokenizer_adasid_text_attrs.yaml", BEAUTY, "text + attributes (concat), gate on text"),
    "beauty/adasid_text_attrs_gate_fused": ("beauty", "tokenizer_adasid_text_attrs.yaml", [*BEAUTY, "compatibility_source=fused"],
                                            "text + attributes (concat), gate on the fusion"),
    "beauty/adasid_attrs": ("beauty", "tokenizer_adasid_attrs.yaml", BEAUTY, "attributes, gate on text"),
    "ml100k/rqvae_title": ("ml100k", "tokenizer_rqvae.yaml", [*ML, TITLE], "title text"),
    "ml100k/rqvae_title_attrs": ("ml100k", "tokenizer_rqvae_ml100k_title_attrs.yaml", ML, "title + genres/year (concat)"),
    "ml100k/rqvae_title_attrs_w05": ("ml100k", "tokenizer_rqvae_ml100k_title_attrs.yaml", [*ML, "fusion.weights.attrs=0.5"],
                                     "title + genres/year (concat, attributes weight 0.5)"),
}
COLUMNS = ("collision_rate", "collided_item_share", "max_group_size", "mean_utilization", "mean_normalized_entropy",
           "sid_entropy_ratio", "mean_hamming", "harmful_text_space", "recon_error")


def run(name: str, out: Path) -> None:
    _, config, overrides, _ = VARIANTS[name]
    folder = out / name
    if (folder / "metrics.json").is_file():
        print(f"{name}: done already", flush=True)
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(ROOT / "recipes/train_tokenizer.py"), "--config", str(ROOT / "recipes/configs" / config),
               *overrides, f"output_dir={folder}", "log_every=10"]
    print(f"{name}: {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    with open(out / f"{name.replace('/', '_')}.log", "w") as log:
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    print(f"{name}: {time.perf_counter() - start:.0f}s", flush=True)


def load(dataset_key: str):
    from genrec.data import load_dataset

    return load_dataset("amazon_beauty" if dataset_key == "beauty" else "ml_100k")


def reference_text(dataset_key: str) -> torch.Tensor:
    from genrec.data import embed_texts, item_texts

    template = None if dataset_key == "beauty" else "Title: {title}."
    texts = item_texts(load(dataset_key).items, template, on_empty="item_id")
    return torch.from_numpy(embed_texts(texts, show_progress=False))


def collision_floor(folder: Path, dataset_key: str, reference: torch.Tensor) -> float:
    """1 - distinct quantiser inputs / N: the collision rate of a tokenizer that maps equal inputs to equal codes."""
    from genrec.data import build_features
    from genrec.tokenizer import pack_sources

    record = json.loads((folder / "sid_tokenizer_config.json").read_text()).get("features")
    x = pack_sources(build_features(load(dataset_key).items, record["sources"])) if record else reference
    return 1.0 - torch.unique(x, dim=0).shape[0] / len(x)


def table(out: Path) -> list[dict]:
    from genrec.tokenizer import SIDTable, tokenizer_metrics

    rows, references = [], {}
    for name, (dataset_key, config, overrides, description) in VARIANTS.items():
        folder = out / name
        if not (folder / "metrics.json").is_file():
            continue
        saved = json.loads((folder / "metrics.json").read_text())
        table_ = SIDTable.load(folder)
        if dataset_key not in references:
            references[dataset_key] = reference_text(dataset_key)
        levels = table_.codebook_sizes[:-1]
        again = tokenizer_metrics(table_.sids[:, :-1], levels, x=references[dataset_key], seed=0)
        rows.append({"variant": name, "input": description, "config": config, "overrides": overrides,
                     **{k: saved.get(k) for k in COLUMNS if k in saved}, "harmful_text_space": again["harmful_near_collision_share"],
                     "collision_rate_check": again["collision_rate"], "train_seconds": saved["timings"]["train_seconds"],
                     "collision_floor": collision_floor(folder, dataset_key, references[dataset_key]),
                     "epoch_seconds_median": sorted(saved["history"]["seconds"])[len(saved["history"]["seconds"]) // 2]})
        assert abs(again["collision_rate"] - saved["collision_rate"]) < 1e-12  # the table holds the metrics' codes
    return rows


def markdown(rows: list[dict]) -> str:
    def fmt(value):
        if value is None:
            return "-"
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = [
        "# Tokenizer metrics by input modality (docs/multimodal.md)",
        "",
        "Command: `OMP_NUM_THREADS=1 GENREC_DATA_DIR=../shared/data python benchmarks/multimodal_tokenizers.py` "
        "(each variant = `python recipes/train_tokenizer.py --config recipes/configs/<config> <overrides>`).",
        "Machine: 2-vCPU AMD EPYC VM (shared), CPU only, 1 thread per run. Date: 2026-11-23. Seed 0, 100 epochs; "
        "Beauty 3 x 256 codes, MovieLens-100k 3 x 64 codes; metrics on the codes before dedup.",
        "",
        "`harmful (text)`: share of text-distant pairs (MiniLM cosine < 0.5) sharing >= 2 of 3 codes, every variant measured "
        "in the same text space (Beauty: title/brand/categories text; MovieLens: title). `recon` is each quantiser's error on "
        "its own reconstruction target, not comparable across inputs.",
        "",
        "`floor`: 1 - distinct quantiser inputs / N, the collision rate of identical inputs (items whose fused input is "
        "the same vector cannot be told apart by any input-driven quantiser; the dedup code separates them).",
        "",
        "| variant | input | config + overrides | collision rate | floor | collided items | max group | utilisation | norm. entropy "
        "| SID entropy / log N | mean Hamming | harmful (text) | recon | s/epoch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        extra = [o for o in r["overrides"] if o.startswith(("fusion.", "compatibility_source", "text_template"))]  # noqa: E501
        lines.append("| " + " | ".join([
            r["variant"], r["input"], f"`{r['config']}`" + (f" `{' '.join(extra)}`" if extra else ""),
            fmt(r.get("collision_rate")), fmt(r["collision_floor"]), fmt(r.get("collided_item_share")), fmt(r.get("max_group_size")),
            fmt(r.get("mean_utilization")), fmt(r.get("mean_normalized_entropy")), fmt(r.get("sid_entropy_ratio")),
            fmt(r.get("mean_hamming")), f"{r['harmful_text_space']:.2e}", fmt(r.get("recon_error")), f"{r['epoch_seconds_median']:.2f}",
        ]) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "runs/multimodal"), help="run folders and logs")
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--results", default=str(ROOT / "benchmarks/results/multimodal_tokenizers.md"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        for name in args.only or VARIANTS:
            run(name, out)
    torch.set_num_threads(1)
    rows = table(out)
    results = Path(args.results)
    results.write_text(markdown(rows))
    results.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
