"""Recommendation latency (one user per call) and throughput (a batch per call) of ``GenerativeRecommender``.

    python benchmarks/bench_recommend.py                                   # runs/beauty/genrec + runs/beauty/tokenizer_hf, CPU
    python benchmarks/bench_recommend.py --model runs/beauty/recommender --users 50 --batch-size 256 --threads 2
    python benchmarks/bench_recommend.py --users 5 --batch-size 16 --repeats 1   # a quick check

What is timed is ``recommender.recommend(...)`` end to end, as a user calls it: item ids -> SID tokens
(``build_seq2seq_dataset``), trie-constrained beam search, leaves -> item ids, with the defaults
(``exclude_seen=True``, the bundle's beam width unless ``--num-beams``). Loading is timed separately.

* latency: ``--users`` test users of the leave-one-out split (a fixed random sample), one
  ``recommend([history])`` call each, after ``--warmup`` calls; median and p90 in milliseconds;
* throughput: ``--batch-size`` test users in one ``recommend(histories, batch_size=...)`` call,
  repeated ``--repeats`` times; users per second of the median call.

Histories are the real test histories (last <= 20 items before the held-out item), with their
training user ids. Prints a Markdown table row (with the machine) for BENCHMARKS.md, and the numbers
as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from genrec.data import leave_one_out_split, load_dataset
from genrec.pipeline import GenerativeRecommender

HEADER = ("| date | machine | torch threads | device | model | items | k | beams | load (s) | latency median / p90 (ms) "
          "| batch | throughput (users/s) |\n|---|---|---|---|---|---|---|---|---|---|---|---|")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="runs/beauty/genrec", help="bundle folder, train_genrec.py run folder or Hub repo id")
    p.add_argument("--tokenizer", default="runs/beauty/tokenizer_hf",
                   help="SID tokenizer replacing the model's ('' = the model's own); the default suits runs/beauty/genrec, "
                        "whose config names an older tokenizer layout")
    p.add_argument("--dataset", default=None, help="dataset of the test histories (default: the model's evaluation dataset)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--users", type=int, default=50, help="users timed one call each (latency)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256, help="users of the throughput call")
    p.add_argument("--repeats", type=int, default=3, help="throughput calls (the median is reported)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--num-beams", type=int, default=None, help="default: the model's (20 for runs/beauty/genrec)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="also print the numbers as JSON")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    start = time.perf_counter()
    rec = GenerativeRecommender.from_pretrained(args.model, tokenizer=args.tokenizer or None, device=args.device, data_dir=args.data_dir)
    load_seconds = time.perf_counter() - start
    dataset = args.dataset or (rec.evaluation or {}).get("dataset")
    if not dataset:
        p.error("the model does not record its dataset: pass --dataset")
    split = leave_one_out_split(load_dataset(dataset, args.data_dir), max_history=rec.max_history)
    if list(split.item_ids) != rec.item_ids:
        raise SystemExit(f"dataset {dataset!r} has another catalogue than the model ({len(split.item_ids)} vs {rec.num_items} items)")
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(split.test))
    histories = [[split.item_ids[i] for i in h] for h in split.test.histories()]
    users = [split.user_ids[u] for u in split.test.user_index]
    num_beams = max(args.num_beams or rec.generation.num_beams, args.k)

    def call(rows: np.ndarray, batch_size: int) -> float:
        t = time.perf_counter()
        rec.recommend([histories[i] for i in rows], k=args.k, user_ids=[users[i] for i in rows], num_beams=num_beams,
                      batch_size=batch_size)
        return time.perf_counter() - t

    for i in range(args.warmup):
        call(order[i:i + 1], 1)
    latency_ms = [1000 * call(order[i:i + 1], 1) for i in range(args.users)]
    batch_rows = order[: args.batch_size]
    batch_seconds = [call(batch_rows, args.batch_size) for _ in range(args.repeats)]

    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{cpu_name()}, {os.cpu_count()} cores" if rec.device.type == "cpu" else torch.cuda.get_device_name(rec.device),
        "torch_threads": torch.get_num_threads(),
        "device": str(rec.device),
        "model": f"{rec.model_type}, {sum(p.numel() for p in rec.model.parameters()) / 1e6:.2f}M params",
        "items": rec.num_items,
        "k": args.k,
        "num_beams": num_beams,
        "load_seconds": load_seconds,
        "latency_ms_median": statistics.median(latency_ms),
        "latency_ms_p90": float(np.percentile(latency_ms, 90)),
        "latency_users": args.users,
        "batch_size": len(batch_rows),
        "users_per_second": len(batch_rows) / statistics.median(batch_seconds),
        "torch": torch.__version__,
    }
    print(HEADER)
    print(f"| {result['date']} | {result['machine']} | {result['torch_threads']} | {result['device']} | {result['model']} "
          f"| {result['items']:,} | {args.k} | {num_beams} | {load_seconds:.1f} | {result['latency_ms_median']:.1f} / "
          f"{result['latency_ms_p90']:.1f} ({args.users} users) | {result['batch_size']} | {result['users_per_second']:.1f} |")
    if args.json:
        print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
