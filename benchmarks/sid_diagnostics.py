"""SID diagnostics per tokenizer (issue 23): do the items that share codes belong together?

    OMP_NUM_THREADS=1 GENREC_DATA_DIR=../shared/data python benchmarks/sid_diagnostics.py \\
        rqvae=runs/cold_start/rqvae/tokenizer quasid=runs/cold_start/quasid/tokenizer \\
        adasid=runs/cold_start/adasid/tokenizer beauty_full=runs/beauty_full/tokenizer \\
        --out benchmarks/results/sid_diagnostics/

For each ``name=TOKENIZER_DIR`` (a ``recipes/train_tokenizer.py`` output folder): the SID table
(``sid_table.safetensors`` + ``sid_items.json``), the tokenizer's recipe config (``metrics.json: config``),
the content the tokenizer's embedding-based metrics compared (the cached text embeddings, or the
configured ``compatibility_source`` of a multimodal tokenizer; :func:`genrec.tokenizer_inputs.build_tokenizer_inputs`
with the recorded settings, so nothing is re-embedded when the cache holds the texts) and the training
split the recommender on that tokenizer trains on (:func:`genrec.runs.split_for_run` with the recorded
``max_history`` / ``cold_item_fraction`` / ``cold_item_seed``: cold-start tokenizers hold out their cold
items, and the split checks that they are the same). :func:`genrec.eval.sid_diagnostics.sid_diagnostics`
runs on those; ``diagnostics.json`` (command, date, commit, machine, every key per tokenizer) and
``diagnostics.md`` (a table, one column per tokenizer) are written to ``--out``.

No model is run, so the top-1 sibling shares (which need a recommender's ranked lists) are not part of it.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from genrec.data import MAX_HISTORY, SplitSettings, load_dataset
from genrec.eval.sid_diagnostics import MAX_BUCKET_SIZE, sid_diagnostics
from genrec.runs import split_for_run
from genrec.tokenizer import SIDTable
from genrec.tokenizer.fusion import FUSED
from genrec.tokenizer.io import atomic_write_json, atomic_write_text
from genrec.tokenizer_inputs import build_tokenizer_inputs

logger = logging.getLogger("sid_diagnostics")

# The recipe settings that decide a tokenizer's content embeddings, with train_tokenizer.py's defaults.
CONTENT_SETTINGS = {"text_template": None, "on_empty_text": "error", "embedding_model": None, "embedding_cache_dir": None,
                    "features": None, "fusion": {}, "compatibility_source": FUSED}


def parse_named(values: list[str]) -> dict[str, Path]:
    """``["name=DIR", ...]`` -> {name: DIR}, in order; names must be distinct."""
    named: dict[str, Path] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not name or not folder:
            raise SystemExit(f"expected name=TOKENIZER_DIR, got {value!r}")
        if name in named:
            raise SystemExit(f"tokenizer name {name!r} given twice")
        named[name] = Path(folder)
    return named


def recipe_config(folder: Path) -> dict:
    """The tokenizer recipe's config recorded in ``<folder>/metrics.json``."""
    path = folder / "metrics.json"
    if not path.is_file():
        raise SystemExit(f"{path}: missing; it records the dataset and split settings (is {folder} a train_tokenizer.py output?)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SystemExit(f"{path}: not valid JSON ({e})") from e
    config = record.get("config")
    if not isinstance(config, dict) or not config.get("dataset"):
        raise SystemExit(f"{path}: no 'config' with a 'dataset' field (written by an older recipe?)")
    return config


class Inputs:
    """Datasets and content embeddings loaded once and shared by the tokenizers that use the same ones."""

    def __init__(self, data_dir: str | None):
        self.data_dir = data_dir
        self._datasets: dict = {}
        self._content: dict = {}

    def dataset(self, config: dict):
        key = (config["dataset"], self.data_dir or config.get("data_dir"))
        if key not in self._datasets:
            self._datasets[key] = load_dataset(*key)
        return self._datasets[key]

    def content(self, config: dict) -> torch.Tensor:
        settings = {name: config.get(name, default) for name, default in CONTENT_SETTINGS.items()}
        key = (config["dataset"], json.dumps(settings, sort_keys=True))
        if key not in self._content:
            inputs = build_tokenizer_inputs(self.dataset(config).items, **settings)
            self._content[key] = inputs.content if inputs.content is not None else inputs.x
        return self._content[key]


def diagnose(name: str, folder: Path, inputs: Inputs, seed: int, max_bucket_size: int) -> dict:
    config = recipe_config(folder)
    table = SIDTable.load(folder)
    dataset = inputs.dataset(config)
    if list(table.item_ids) != list(dataset.item_ids):
        raise SystemExit(f"{folder / 'sid_items.json'}: item_ids are not the catalogue of '{config['dataset']}' in the same order "
                         f"({len(table.item_ids)} vs {len(dataset.item_ids)} items)")
    settings = SplitSettings(max_history=config.get("max_history", MAX_HISTORY), cold_item_fraction=config.get("cold_item_fraction", 0.0),
                             cold_item_seed=config.get("cold_item_seed", 0))
    split = split_for_run(settings, dataset, folder)
    content = inputs.content(config)
    start = time.perf_counter()
    result = sid_diagnostics(table.sids, content, split.train_sequences, seed=seed, max_bucket_size=max_bucket_size)
    seconds = time.perf_counter() - start
    logger.info("%s: diagnostics in %.1fs", name, seconds)
    return {"tokenizer_dir": str(folder), "dataset": config["dataset"], "method": config.get("method"),
            "regularizers": config.get("regularizers"), "cold_items": int(split.cold_items.sum()) if split.cold_items is not None else 0,
            "users": len(split.train_sequences), "content_dim": int(content.shape[1]), "seconds": round(seconds, 2), **result}


def _f(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _small(value) -> str:
    """Chance levels span 1e-2 .. 1e-6: two significant digits, in scientific notation below 0.001."""
    return "n/a" if value is None else f"{value:.4f}" if value >= 1e-3 else f"{value:.1e}"


def _ratio(value, chance) -> str:
    return "n/a" if value is None or not chance else f"{value / chance:.1f}x"


ROWS = [  # (label, cell(diagnostics) -> str)
    ("items (cold held out)", lambda d: f"{d['num_items']} ({d['cold_items']})"),
    ("collided pairs (same 3 semantic codes)", lambda d: f"{d['collided_pairs']}" + (f" (+{d['collided_pairs_left_out']} left out)"
                                                                                        if d["collided_pairs_left_out"] else "")),
    ("collided: content cosine mean / median", lambda d: f"{_f(d['collided_cosine_mean'])} / {_f(d['collided_cosine_p50'])}"),
    ("collided: cosine p10 / p90", lambda d: f"{_f(d['collided_cosine_p10'])} / {_f(d['collided_cosine_p90'])}"),
    ("collided: co-consumed share (among pairs of trained items)", lambda d: f"{_f(d['collided_co_consumed_share'], 4)} "
                                                                            f"({_f(d['collided_co_consumed_share_seen'], 4)})"),
    ("sibling pairs (share levels 1-2 only)", lambda d: f"{d['sibling_pairs']}" + (f" (+{d['sibling_pairs_left_out']} left out)"
                                                                                      if d["sibling_pairs_left_out"] else "")),
    ("sibling: content cosine mean / median", lambda d: f"{_f(d['sibling_cosine_mean'])} / {_f(d['sibling_cosine_p50'])}"),
    ("sibling: cosine p10 / p90", lambda d: f"{_f(d['sibling_cosine_p10'])} / {_f(d['sibling_cosine_p90'])}"),
    ("sibling: co-consumed share (among pairs of trained items)", lambda d: f"{_f(d['sibling_co_consumed_share'], 4)} "
                                                                            f"({_f(d['sibling_co_consumed_share_seen'], 4)})"),
    ("random pairs: cosine mean / median", lambda d: f"{_f(d['sibling_random_cosine_mean'])} / {_f(d['sibling_random_cosine_p50'])}"),
    ("random pairs: co-consumed share (among pairs of trained items)", lambda d: f"{_f(d['sibling_random_co_consumed_share'], 4)} "
                                                                             f"({_f(d['sibling_random_co_consumed_share_seen'], 4)})"),
    ("consecutive training pairs (repeats left out)", lambda d: f"{d['consecutive_pairs']} ({d['consecutive_repeats_excluded']})"),
    *[(f"consecutive: share sharing first {k} code{'s' if k > 1 else ''}",
       lambda d, k=k: f"{_f(d[f'consecutive_share_prefix{k}'], 4)}") for k in (1, 2, 3)],
    *[(f"chance, prefix {k}: uniform / popularity-weighted",
       lambda d, k=k: f"{_small(d[f'chance_uniform_prefix{k}'])} / {_small(d[f'chance_popularity_prefix{k}'])}") for k in (1, 2, 3)],
    *[(f"consecutive prefix-{k} sharing / popularity chance",
       lambda d, k=k: _ratio(d[f"consecutive_share_prefix{k}"], d[f"chance_popularity_prefix{k}"])) for k in (1, 2, 3)],
]


def markdown(summary: dict) -> str:
    names = list(summary["tokenizers"])
    lines = ["# SID diagnostics per tokenizer", "",
             f"`{summary['command']}` ({summary['date']}, commit {summary['commit']}, {summary['machine']})", "",
             "Collided pairs share all 3 semantic codes (only the dedup code differs); sibling pairs share levels 1-2 and "
             "differ at level 3. Co-consumed: both items in at least one user's training sequence (leave-one-out "
             "training part; cold items held out); in brackets the share among pairs whose two items both occur in "
             "training (pairs with a cold item can never be co-consumed). Random pairs: as many uniformly random item pairs as sibling pairs "
             f"(seed {summary['settings']['seed']}). Chance: the exact share of random distinct-item pairs sharing the "
             "prefix, uniform over the catalogue or weighted by how often items occur in the consecutive pairs.", "",
             "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, cell in ROWS:
        lines.append(f"| {label} | " + " | ".join(cell(summary["tokenizers"][n]) for n in names) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tokenizers", nargs="+", metavar="name=TOKENIZER_DIR", help="tokenizer folders, each with a name")
    parser.add_argument("--out", default="benchmarks/results/sid_diagnostics", help="folder for diagnostics.json and diagnostics.md")
    parser.add_argument("--data-dir", default=None, help="folder holding the datasets (default: the recorded data_dir, then $GENREC_DATA_DIR)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the random baseline pairs")
    parser.add_argument("--max-bucket-size", type=int, default=MAX_BUCKET_SIZE,
                        help="members of one code bucket that pairs are formed from (larger buckets are thinned and counted)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    named = parse_named(args.tokenizers)
    out = Path(args.out)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    summary = {"command": " ".join(["python", "benchmarks/sid_diagnostics.py", *(argv if argv is not None else sys.argv[1:])]),
               "date": time.strftime("%Y-%m-%d"), "commit": commit,
               "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), {torch.backends.cpu.get_cpu_capability()}",
               "settings": {"seed": args.seed, "max_bucket_size": args.max_bucket_size}, "tokenizers": {}}
    inputs = Inputs(args.data_dir)
    for name, folder in named.items():
        summary["tokenizers"][name] = diagnose(name, folder, inputs, args.seed, args.max_bucket_size)
    atomic_write_json(out / "diagnostics.json", summary, mode=0o644)
    atomic_write_text(out / "diagnostics.md", markdown(summary), mode=0o644)
    print(markdown(summary))
    return summary


if __name__ == "__main__":
    main()
