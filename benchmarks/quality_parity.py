"""Quality parity: length bucketing + bf16 vs fp32 padded training, same steps, several seeds.

    python benchmarks/quality_parity.py --dataset ml_100k --steps 300 --seeds 0 1 2 --out runs/parity

Both arms run ``recipes/train_genrec.py`` (TIGER-size T5) for exactly ``--steps`` optimizer steps on
the same leave-one-out split and the same SID tokenizer, then evaluate on the full validation set
(constrained beam search, 20 beams):

- ``fp32_padded``: shuffled batches (``training.length_bucketing=false``; each batch padded to its
  longest row, which for random batches is ~the maximum length), fp32;
- ``bucketed_bf16``: :class:`genrec.training.LengthBucketBatchSampler` batches + bf16 autocast
  (validation runs in fp32 in both arms).

The tokenizer (RQ-VAE, ``recipes/configs/tokenizer_rqvae.yaml``) is trained once into
``<out>/tokenizer``. Every (arm, seed) run goes to ``<out>/<arm>-seed<k>/``; a run with
``metrics.json`` is reused, so the script resumes. Prints and writes ``<out>/parity.md`` and
``<out>/parity.json``: validation NDCG@10 / Recall@10 per seed, mean +- std per arm, the paired
difference per seed (bucketed_bf16 - fp32_padded) and the training throughput of each arm.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARMS = {
    "fp32_padded": ["training.length_bucketing=false", "training.mixed_precision=no"],
    "bucketed_bf16": ["training.length_bucketing=true", "training.mixed_precision=bf16"],
}


def run(cmd: list[str], log: Path) -> None:
    print(" ".join(cmd[1:]), flush=True)
    with open(log, "w") as f:
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "TQDM_DISABLE": "1"})
    if code != 0:
        raise SystemExit(f"command failed (exit {code}); see {log}")


def mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}" if values else "-"
    return f"{statistics.mean(values):.4f} +- {statistics.stdev(values):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml_100k")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tokenizer-epochs", type=int, default=100)
    parser.add_argument("--out", default="runs/parity")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    tok_dir = out / "tokenizer"
    if not (tok_dir / "metrics.json").exists():
        run([sys.executable, str(ROOT / "recipes/train_tokenizer.py"), "--config", str(ROOT / "recipes/configs/tokenizer_rqvae.yaml"),
             f"dataset={args.dataset}", f"output_dir={tok_dir}", f"epochs={args.tokenizer_epochs}", "log_every=0",
             "on_empty_text=item_id"], out / "tokenizer.log")  # ML-100k item 267 has no title, year or genres

    rows = []
    for seed in args.seeds:
        for arm, overrides in ARMS.items():
            run_dir = out / f"{arm}-seed{seed}"
            if not (run_dir / "metrics.json").exists():
                run([sys.executable, str(ROOT / "recipes/train_genrec.py"), "--config", str(ROOT / "recipes/configs/genrec_beauty.yaml"),
                     f"dataset={args.dataset}", f"tokenizer_dir={tok_dir}", f"output_dir={run_dir}", f"training.seed={seed}",
                     f"training.max_steps={args.steps}", "training.epochs=1000", "training.max_train_minutes=null",
                     f"training.batch_size={args.batch_size}", "training.warmup_steps=50", "eval.valid_max_users=null",
                     "eval.test_max_users=null", *overrides], out / f"{arm}-seed{seed}.log")
            metrics = json.loads((run_dir / "metrics.json").read_text())
            history = json.loads((run_dir / "train_history.json").read_text())
            train_seconds = metrics["timings"]["train_seconds"]
            rows.append({"arm": arm, "seed": seed, "steps": metrics["steps"],
                         "ndcg@10": metrics["validation"]["ndcg@10"], "recall@10": metrics["validation"]["recall@10"],
                         "test_ndcg@10": metrics["test"]["ndcg@10"], "train_seconds": train_seconds,
                         # training only (the epoch's wall time before validation); runs stay inside epoch 0 at these budgets
                         "examples_per_second": statistics.mean(e["examples_per_second"] for e in history["epochs"]),
                         "final_train_loss": history["epochs"][-1]["train_loss"]})
            print(json.dumps(rows[-1]), flush=True)

    lines = [f"Quality parity on {args.dataset}: {args.steps} steps x batch {args.batch_size}, TIGER-size T5, "
             f"seeds {args.seeds}; {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"{time.strftime('%Y-%m-%d')}", "",
             "| arm | validation NDCG@10 | validation Recall@10 | test NDCG@10 | final train loss | training examples/s |",
             "|---|---|---|---|---|---|"]
    for arm in ARMS:
        r = [row for row in rows if row["arm"] == arm]
        lines.append(f"| {arm} | {mean_std([x['ndcg@10'] for x in r])} | {mean_std([x['recall@10'] for x in r])} | "
                     f"{mean_std([x['test_ndcg@10'] for x in r])} | {mean_std([x['final_train_loss'] for x in r])} | "
                     f"{statistics.mean(x['examples_per_second'] for x in r):.0f} |")
    diffs = [next(x["ndcg@10"] for x in rows if x["arm"] == "bucketed_bf16" and x["seed"] == s)
             - next(x["ndcg@10"] for x in rows if x["arm"] == "fp32_padded" and x["seed"] == s) for s in args.seeds]
    lines += ["", "Paired difference of validation NDCG@10 (bucketed_bf16 - fp32_padded) per seed: "
              + ", ".join(f"seed {s}: {d:+.4f}" for s, d in zip(args.seeds, diffs, strict=True)) + f"; mean {statistics.mean(diffs):+.4f}"]
    seed_std = statistics.stdev([x["ndcg@10"] for x in rows if x["arm"] == "fp32_padded"]) if len(args.seeds) > 1 else float("nan")
    lines.append(f"Seed standard deviation of the fp32 arm: {seed_std:.4f}")
    report = "\n".join(lines) + "\n"
    (out / "parity.md").write_text(report)
    (out / "parity.json").write_text(json.dumps({"args": vars(args), "rows": rows, "paired_differences": diffs}, indent=1))
    print(report)


if __name__ == "__main__":
    main()
