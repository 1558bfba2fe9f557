"""Content KNN on the leave-one-out split: the content-only reference beside SASRec and the generative runs.

    GENREC_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python benchmarks/content_knn.py --out benchmarks/results/content_knn

A user is the recency-weighted mean of the content vectors of their last ``--max-history`` items
(:class:`genrec.models.semantic_knn.SemanticKNN`, ``history_decay``: the item ``a`` places before the
last weighs ``decay ** a``); the whole catalogue is ranked by cosine, with the history's own items left
out (``--keep-history`` keeps them, as ``semantic_knn`` does in ``benchmarks/cold_start.py``). The
content vectors are the tokenizers' input (the item texts embedded with all-MiniLM-L6-v2, cached). No
interaction is used except the history itself: nothing is trained.

The decay is chosen on all validation users (NDCG@10); test Recall/NDCG@5/10 over all test users are
reported for every decay, the chosen one first. Writes ``metrics.json`` (with command, machine, date,
commit) and ``per_user_test.json.gz`` of the chosen decay (gzip of the per-user format ``benchmarks/paired_runs.py``
reads as ``per_user_test.json``).
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

import torch

from genrec.data import load_dataset
from genrec.data.split import leave_one_out_split
from genrec.eval.metrics import per_user_metrics
from genrec.models.semantic_knn import SemanticKNN
from genrec.tokenizer.io import atomic_write_file, atomic_write_json
from genrec.tokenizer_inputs import build_tokenizer_inputs

DECAYS = (0.0, 0.3, 0.5, 0.7, 1.0)
KS = (5, 10)


def rank(knn: SemanticKNN, examples, decay: float, keep_history: bool, batch_size: int = 2048) -> torch.Tensor:
    """(B, 10) top items of every example."""
    history = torch.from_numpy(examples.padded_histories())
    parts = []
    for first in range(0, len(history), batch_size):
        rows = history[first : first + batch_size]
        parts.append(knn.rank(rows, max(KS), history_decay=decay, exclude=None if keep_history else rows)[0])
    return torch.cat(parts)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="amazon_beauty")
    parser.add_argument("--data-dir", default=None, help="default: $GENREC_DATA_DIR")
    parser.add_argument("--max-history", type=int, default=20, help="history items kept (the recipes' max_history)")
    parser.add_argument("--keep-history", action="store_true", help="let a user's own history items be recommended")
    parser.add_argument("--out", default="benchmarks/results/content_knn")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    dataset = load_dataset(args.dataset, args.data_dir)
    split = leave_one_out_split(dataset, max_history=args.max_history)
    knn = SemanticKNN(build_tokenizer_inputs(dataset.items).x)
    valid_targets, test_targets = torch.from_numpy(split.valid.target), torch.from_numpy(split.test.target)
    results = {}
    for decay in DECAYS:
        valid = per_user_metrics(rank(knn, split.valid, decay, args.keep_history), valid_targets, ks=KS)
        test = per_user_metrics(rank(knn, split.test, decay, args.keep_history), test_targets, ks=KS)
        results[decay] = {"validation": {k: float(v.mean()) for k, v in valid.items()},
                          "test": {k: float(v.mean()) for k, v in test.items()}, "per_user": test}
        print(f"decay {decay}: validation N@10 {results[decay]['validation']['ndcg@10']:.4f}, "
              f"test R@10 {results[decay]['test']['recall@10']:.4f} N@10 {results[decay]['test']['ndcg@10']:.4f}", flush=True)
    chosen = max(DECAYS, key=lambda d: results[d]["validation"]["ndcg@10"])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = Path(args.out)
    summary = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
               "date": time.strftime("%Y-%m-%d"), "commit": commit,
               "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), {torch.backends.cpu.get_cpu_capability()}",
               "dataset": args.dataset, "max_history": args.max_history, "history_excluded": not args.keep_history,
               "users": {"validation": len(split.valid), "test": len(split.test)},
               "chosen_history_decay": chosen, "test": results[chosen]["test"],
               "by_decay": {str(d): {"validation": r["validation"], "test": r["test"]} for d, r in results.items()},
               "seconds": time.perf_counter() - start}
    out.mkdir(parents=True, exist_ok=True)
    per_user = {"user_index": [int(u) for u in split.test.user_index],
                **{m: [float(x) for x in v] for m, v in results[chosen]["per_user"].items()}}
    atomic_write_file(out / "per_user_test.json.gz", lambda tmp: Path(tmp).write_bytes(gzip.compress(json.dumps(per_user).encode())),
                      mode=0o644)
    atomic_write_json(out / "metrics.json", summary, mode=0o644)
    print(f"chosen decay {chosen} (validation): test {results[chosen]['test']} -> {out}")
    return summary


if __name__ == "__main__":
    main()
