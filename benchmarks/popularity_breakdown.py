"""Where a ranking's hits come from: test Recall/NDCG@10 by how often the target item was a training target.

    GENREC_DATA_DIR=../shared/data python benchmarks/popularity_breakdown.py \
        item_pooled=runs/beauty_full/item_pooled/per_user_test.json \
        gpu=benchmarks/results/beauty_converged_gpu/long_no_user_token/per_user_main_no_user_token_seed42.json.gz \
        content_knn=benchmarks/results/content_knn/per_user_test.json.gz --out benchmarks/results/popularity_breakdown

Each ``name=FILE`` is a per-user file (``evaluate_genrec.py --per-user``, ``train_genrec.py``'s
``per_user_test.json``, or its gzip) of one split (``--split`` for files that do not say). The split is rebuilt (leave-one-out, ``--max-history``); a
user's target is put in a bucket by its count among the training split's targets (``--edges``: bucket upper bounds,
the last one open). Per run and bucket: the users' share, mean Recall@10 / NDCG@10, and the bucket's part of the
overall Recall@10 (share x recall). Writes ``metrics.json`` (with command, machine, date, commit) and ``summary.md``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from genrec.data import leave_one_out_split, load_dataset
from genrec.tokenizer.io import atomic_write_json, atomic_write_text

METRICS = ("recall@10", "ndcg@10")


def read_per_user(path: Path, split: str) -> dict:
    """A per-user file (``.json`` or ``.json.gz``) as written by :func:`genrec.eval.per_user.write_per_user`; one
    without a ``split`` (``benchmarks/content_knn.py``'s) is of ``split``."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        record = json.load(handle)
    missing = [key for key in ("user_index", *METRICS) if key not in record]
    if missing:
        raise ValueError(f"{path}: not a per-user metrics file (no {missing})")
    record.setdefault("split", split)
    return record


def bucket_labels(edges: list[int]) -> list[str]:
    """``[0, 5, 15]`` -> ``["0", "1-5", "6-15", ">15"]``."""
    labels, low = [], 0
    for edge in edges:
        labels.append(str(edge) if edge == low else f"{low}-{edge}")
        low = edge + 1
    return [*labels, f">{edges[-1]}"]


def breakdown(record: dict, targets: np.ndarray, counts: np.ndarray, edges: list[int]) -> list[dict]:
    """Per bucket of the targets' training counts: users, share, mean metrics, part of the overall recall."""
    users = np.asarray(record["user_index"], dtype=np.int64)
    bucket = np.searchsorted(np.asarray(edges), counts[targets[users]], side="left")  # count <= edges[i] -> bucket i
    values = {metric: np.asarray(record[metric], dtype=np.float64) for metric in METRICS}
    rows = []
    for index, label in enumerate(bucket_labels(edges)):
        members = bucket == index
        row = {"bucket": label, "users": int(members.sum()), "share": float(members.mean())}
        for metric in METRICS:
            row[metric] = float(values[metric][members].mean()) if members.any() else float("nan")
        row["part_of_recall@10"] = float(values["recall@10"][members].sum() / len(users))
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="name=PER_USER_FILE")
    parser.add_argument("--dataset", default="amazon_beauty")
    parser.add_argument("--max-history", type=int, default=20)
    parser.add_argument("--edges", default="0,5,15,40", help="bucket upper bounds of the training-target count")
    parser.add_argument("--split", default="test", choices=["test", "validation"], help="of files that do not say")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    edges = [int(edge) for edge in args.edges.split(",")]
    if edges != sorted(set(edges)) or edges[0] < 0:
        parser.error(f"--edges must be increasing non-negative integers, got {args.edges}")
    runs = {}
    for spec in args.runs:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            parser.error(f"expected name=PER_USER_FILE, got {spec!r}")
        runs[name] = read_per_user(Path(file), args.split)
    split = leave_one_out_split(load_dataset(args.dataset, None), max_history=args.max_history)
    counts = np.bincount(np.asarray(split.train.target, dtype=np.int64), minlength=len(split.item_ids))
    report = {"command": "python benchmarks/popularity_breakdown.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {platform.python_version()}",
              "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
              "dataset": args.dataset, "edges": edges, "runs": {}}
    lines = [f"Test metrics by the target's count among the {len(split.train.target):,} training targets "
             f"({args.dataset}; buckets {', '.join(bucket_labels(edges))}).", "",
             "| run | bucket | users (share) | R@10 | N@10 | part of R@10 |", "|---|---|---|---|---|---|"]
    for name, record in runs.items():
        examples = {"test": split.test, "validation": split.valid}.get(record["split"])
        if examples is None:
            raise ValueError(f"{name}: split {record['split']!r} is neither test nor validation")
        targets = np.full(len(split.user_ids), -1, dtype=np.int64)
        targets[np.asarray(examples.user_index, dtype=np.int64)] = np.asarray(examples.target, dtype=np.int64)
        if (targets[np.asarray(record["user_index"], dtype=np.int64)] < 0).any():
            raise ValueError(f"{name}: users without a {record['split']} example in this split (another dataset or split?)")
        rows = breakdown(record, targets, counts, edges)
        overall = {metric: float(np.mean(record[metric])) for metric in METRICS}
        report["runs"][name] = {"split": record["split"], "users": len(record["user_index"]), "overall": overall, "buckets": rows}
        for row in rows:
            lines.append(f"| {name} | {row['bucket']} | {row['users']:,} ({row['share']:.3f}) | {row['recall@10']:.4f} | "
                         f"{row['ndcg@10']:.4f} | {row['part_of_recall@10']:.4f} |")
        lines.append(f"| {name} | all | {len(record['user_index']):,} | {overall['recall@10']:.4f} | {overall['ndcg@10']:.4f} | "
                     f"{overall['recall@10']:.4f} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "metrics.json", report, mode=0o644)
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n", mode=0o644)
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
