"""Test quality against training budget: finished runs of one recipe at different lengths, and the trend.

    python benchmarks/budget_curve.py runs/beauty_full/item_pooled runs/beauty_full/item_pooled_12500 \\
        runs/beauty_full/item_pooled_18000 runs/beauty_full/item_pooled_long --out benchmarks/results/budget_curve

Each argument is a finished ``recipes/train_genrec.py`` run (``metrics.json``: test metrics over all users, examples
seen). A run's budget is the examples its tested weights saw: those of its best validation step (``best_step``, read from
its ``learning_curve.csv``), which can be earlier than its last step. The learning curve of one run shows validation on a 3,000-user sample at constant learning rate; this shows
what a user gets, test metrics after the final decay, at each budget. A least-squares line of each metric against
log(examples seen) is fitted over the runs and solved for the examples at which it would reach a target (the
``--targets``, TIGER's published numbers by default). With a handful of points that is a trend, not a prediction:
the line is only as good as the assumption that the gain per doubling of the budget stays constant (it shrinks as a
run converges, so the estimate is a lower bound on the budget needed). Writes ``metrics.json`` (the runs, the fits,
the budgets they imply; command, date, commit), ``budget_curve.csv`` and ``budget_curve.png``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from genrec.eval.report import read_learning_curve
from genrec.tokenizer.io import atomic_write_file, atomic_write_json, atomic_write_text

METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
TIGER = {"recall@5": 0.0454, "ndcg@5": 0.0321, "recall@10": 0.0648, "ndcg@10": 0.0384}


def read_run(run: Path) -> dict:
    path = run / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (is {run} a finished train_genrec.py run?)")
    metrics = json.loads(path.read_text())
    for field in ("examples_seen", "test"):
        if field not in metrics:
            raise KeyError(f"{path}: no '{field}'")
    timings = metrics.get("timings", {})
    # The tested weights are the best validation's (best/), which may be older than the run's last step.
    examples_tested, best_step = int(metrics["examples_seen"]), metrics.get("best_step")
    curve = run / "learning_curve.csv"
    if best_step is not None and curve.is_file():
        at_best = [row for row in read_learning_curve(curve) if int(row["step"]) == int(best_step)]
        if at_best:
            examples_tested = int(at_best[0]["examples_seen"])
    return {"run": str(run), "examples_seen": int(metrics["examples_seen"]), "steps": metrics.get("steps"),
            "best_step": best_step, "examples_tested": examples_tested,
            "train_cpu_seconds": timings.get("train_cpu_seconds"), "test_users": timings.get("test_users"),
            "test": {m: float(metrics["test"][m]) for m in METRICS}}


def log_linear_fit(examples: np.ndarray, values: np.ndarray) -> dict:
    """``value ~ intercept + per_doubling * log2(examples)`` by least squares, with R^2."""
    x = np.log2(examples.astype(np.float64))
    slope, intercept = np.polyfit(x, values, 1)
    predicted = intercept + slope * x
    residual = float(((values - predicted) ** 2).sum())
    total = float(((values - values.mean()) ** 2).sum())
    return {"intercept": float(intercept), "per_doubling": float(slope), "r2": 1.0 - residual / total if total > 0 else float("nan")}


def examples_to_reach(fit: dict, target: float) -> float | None:
    """Examples at which the fitted line reaches ``target`` (None when it does not rise)."""
    if fit["per_doubling"] <= 0:
        return None
    return float(2.0 ** ((target - fit["intercept"]) / fit["per_doubling"]))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--targets", default=json.dumps(TIGER), help="JSON {metric: value} to solve the fits for")
    parser.add_argument("--title", default="Amazon Beauty: test quality after the final decay, by training budget")
    args = parser.parse_args(argv)
    if len(args.runs) < 2:
        parser.error("give at least two runs (a trend needs two budgets)")
    targets = json.loads(args.targets)
    runs = sorted((read_run(r) for r in args.runs), key=lambda r: r["examples_tested"])
    examples = np.array([r["examples_tested"] for r in runs])
    if len(set(examples.tolist())) < 2:
        parser.error("the runs' tested weights must differ in examples seen")
    fits = {}
    for m in METRICS:
        fit = log_linear_fit(examples, np.array([r["test"][m] for r in runs]))
        if m in targets:
            fit["target"] = targets[m]
            fit["examples_to_reach_target"] = examples_to_reach(fit, targets[m])
        fits[m] = fit

    args.out.mkdir(parents=True, exist_ok=True)
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["run", "examples_tested", "best_step", "examples_seen", "steps", "train_cpu_seconds", *METRICS])
    for r in runs:
        writer.writerow([r["run"], r["examples_tested"], r["best_step"], r["examples_seen"], r["steps"], r["train_cpu_seconds"],
                         *(r["test"][m] for m in METRICS)])
    atomic_write_text(args.out / "budget_curve.csv", table.getvalue())

    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    reached = [fits[m].get("examples_to_reach_target") or 0.0 for m in ("recall@10", "ndcg@10")]
    grid = np.geomspace(examples.min(), max(examples.max(), *reached), 50)  # the trend drawn out to the targets
    for ax, m in zip(axes, ("recall@10", "ndcg@10"), strict=True):
        ax.plot(examples / 1e6, [r["test"][m] for r in runs], "o", label="runs (test, all users)")
        ax.plot(grid / 1e6, fits[m]["intercept"] + fits[m]["per_doubling"] * np.log2(grid), "--",
                label=f"log-linear trend (+{fits[m]['per_doubling']:.4f} per doubling)")
        if m in targets:
            ax.axhline(targets[m], color="gray", linestyle=":", label=f"target {targets[m]}")
        ax.set_xscale("log")
        millions = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")
        ax.xaxis.set_major_formatter(millions)
        ax.xaxis.set_minor_formatter(millions)
        ax.set_xlabel("training examples seen by the tested weights (millions)")
        ax.set_ylabel(f"test {m}")
        ax.legend(fontsize=8)
    fig.suptitle(args.title, fontsize=10)
    fig.tight_layout()
    atomic_write_file(args.out / "budget_curve.png", lambda tmp: fig.savefig(tmp, format="png", dpi=120), mode=0o644)
    plt.close(fig)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    summary = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
               "date": time.strftime("%Y-%m-%d"), "commit": commit, "runs": runs, "fits": fits,
               "fit": "value = intercept + per_doubling * log2(examples seen), least squares over the runs"}
    atomic_write_json(args.out / "metrics.json", summary, mode=0o644)
    for m, f in fits.items():
        reach = f.get("examples_to_reach_target")
        print(f"{m}: +{f['per_doubling']:.4f} per doubling (R^2 {f['r2']:.3f})"
              + (f"; reaches {f['target']} at ~{reach / 1e6:.1f}M examples" if reach else ""))
    return summary


if __name__ == "__main__":
    main()
