"""Every tokenizer and ablation on Amazon Beauty, one seed, the same training budget: docs/method.md section 7 table.

    python benchmarks/beauty_tokenizer_table.py --epochs 200 --seed 0 --out runs/beauty_table
    python benchmarks/beauty_tokenizer_table.py --only rqvae quasid --epochs 20    # a subset
    python benchmarks/beauty_tokenizer_table.py --jobs 2    # two runs at a time, one torch thread each

Each row is ``recipes/train_tokenizer.py`` in its own process (RQ-VAE base config, ``regularizers=<preset>``;
``random`` and ``rq_kmeans`` from their configs), written to ``<out>/<name>/``. A run whose
``metrics.json`` exists is finished and reused (the recipe writes it last), so the script resumes
after a crash. ``<out>/<name>/run_info.json`` records the command and the torch threads of the
run (2-core machines: ``--jobs 2`` with one thread per run finishes the table sooner than one run
with two threads, but per-epoch times are then single-thread times). After every run the Markdown table is rewritten to ``<out>/table.md`` (and the rows
to ``<out>/table.json``); a failed run is reported with its log and does not stop the others.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "recipes" / "configs"

# name -> (config, overrides); the regularised rows are presets of genrec.tokenizer.regularizers.PRESETS
ROWS: dict[str, tuple[str, list[str]]] = {
    "random": ("tokenizer_random.yaml", []),
    "rq_kmeans": ("tokenizer_rqkmeans.yaml", []),
    "rqvae": ("tokenizer_rqvae.yaml", []),
    "letter": ("tokenizer_rqvae.yaml", ["regularizers=letter"]),
    "letter+sinkhorn": ("tokenizer_rqvae.yaml", ["regularizers=letter", "quantizer.sinkhorn_last_level=true"]),
    "quasid": ("tokenizer_rqvae.yaml", ["regularizers=quasid"]),
    "adasid": ("tokenizer_rqvae.yaml", ["regularizers=adasid"]),
    "rqvae+repulsion": ("tokenizer_rqvae.yaml", ["regularizers=rqvae+repulsion"]),
    "letter+repulsion": ("tokenizer_rqvae.yaml", ["regularizers=letter+repulsion"]),
    "quasid-no-mask": ("tokenizer_rqvae.yaml", ["regularizers=quasid-no-mask"]),
    "quasid-no-severity": ("tokenizer_rqvae.yaml", ["regularizers=quasid-no-severity"]),
    "quasid-no-contrastive": ("tokenizer_rqvae.yaml", ["regularizers=quasid-no-contrastive"]),
    "adasid-no-gate": ("tokenizer_rqvae.yaml", ["regularizers=adasid-no-gate"]),
    "adasid-no-load": ("tokenizer_rqvae.yaml", ["regularizers=adasid-no-load"]),
    "adasid-no-schedule": ("tokenizer_rqvae.yaml", ["regularizers=adasid-no-schedule"]),
    "adasid-no-contrastive": ("tokenizer_rqvae.yaml", ["regularizers=adasid-no-contrastive"]),
}

COLUMNS = [  # (header, metrics.json key, format)
    ("collision rate", "collision_rate", "{:.4f}"),
    ("collided items", "collided_item_share", "{:.4f}"),
    ("max group", "max_group_size", "{:d}"),
    ("util L1/L2/L3", "utilization", None),
    ("entropy L1/L2/L3", "normalized_entropy", None),
    ("SID entropy", "sid_entropy_ratio", "{:.4f}"),
    ("mean Hamming", "mean_hamming", "{:.3f}"),
    ("harmful near-coll.", "harmful_near_collision_share", "{:.2e}"),
    ("recon MSE", "recon_error", "{:.4f}"),
]


def cell(metrics: dict, key: str, fmt: str | None) -> str:
    value = metrics.get(key)
    if value is None:
        return "-"
    if fmt is None:
        return "/".join(f"{v:.3f}" for v in value)
    return fmt.format(value)


def write_table(out: Path, names: list[str], failures: dict[str, str], epochs: int, seed: int) -> str:
    rows, lines = [], []
    header = ["tokenizer", *[c[0] for c in COLUMNS], "train s", "median s/epoch", "threads"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for name in names:
        path = out / name / "metrics.json"
        if name in failures:
            lines.append(f"| {name} | failed: {failures[name]} |")
            continue
        if not path.exists():
            continue
        metrics = json.loads(path.read_text())
        train = metrics["timings"]["train_seconds"]
        seconds = metrics.get("history", {}).get("seconds") or []
        trained = bool(seconds)
        # the median epoch is robust to other processes slowing some epochs on a shared machine
        per_epoch = f"{sorted(seconds)[len(seconds) // 2]:.2f}" if trained else "-"
        info_path = out / name / "run_info.json"
        threads = json.loads(info_path.read_text())["threads"] if info_path.exists() else "default"
        lines.append("| " + " | ".join([name, *[cell(metrics, key, fmt) for _, key, fmt in COLUMNS], f"{train:.0f}", per_epoch,
                                        str(threads)]) + " |")
        rows.append({"tokenizer": name, "seed": seed, "epochs": epochs if trained else None,
                     **{key: metrics.get(key) for _, key, _ in COLUMNS}, "train_seconds": train,
                     "median_epoch_seconds": float(per_epoch) if trained else None})
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    (out / "table.json").write_text(json.dumps(rows, indent=1))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/beauty_table")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", choices=list(ROWS), help="run only these rows")
    parser.add_argument("--dataset", default="amazon_beauty")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (each with OMP_NUM_THREADS=1 when > 1)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.only or list(ROWS)
    failures: dict[str, str] = {}
    threads = "1" if args.jobs > 1 else os.environ.get("OMP_NUM_THREADS", "default")

    def run_one(name: str) -> None:
        run_dir = out / name
        config, overrides = ROWS[name]
        cmd = [sys.executable, str(ROOT / "recipes" / "train_tokenizer.py"), "--config", str(CONFIGS / config),
               f"dataset={args.dataset}", f"output_dir={run_dir}", f"epochs={args.epochs}", f"seed={args.seed}", "log_every=50", *overrides]
        print(f"[{name}] {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "run_info.json").write_text(json.dumps({"command": cmd[1:], "threads": threads}))
        env = {**os.environ, "TQDM_DISABLE": "1", **({"OMP_NUM_THREADS": "1"} if args.jobs > 1 else {})}
        with open(out / f"{name}.log", "w") as log:
            code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        if code != 0:
            failures[name] = f"exit {code}, see {name}.log"
            print(f"[{name}] FAILED (exit {code}); log: {out / (name + '.log')}", flush=True)
        else:
            print(f"[{name}] done in {time.perf_counter() - start:.0f}s", flush=True)
        write_table(out, names, failures, args.epochs, args.seed)

    todo = []
    for name in names:
        if (out / name / "metrics.json").exists():
            print(f"[{name}] finished earlier, reused")
        else:
            todo.append(name)
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(run_one, todo))
    print(write_table(out, names, failures, args.epochs, args.seed))


if __name__ == "__main__":
    main()
