"""Quality per unit of compute: the plain T5 against the every-target mode(s), from their learning curves.

    bash benchmarks/efficient_training.sh          # trains (or resumes) every mode, then runs this script
    python benchmarks/efficient_training.py plain=runs/beauty_full/genrec every_item=runs/beauty_full/genrec_every \\
        --out benchmarks/results/efficient_training

The first run is the reference. Each run is a ``recipes/train_genrec.py`` output folder whose
``learning_curve.csv`` holds validation NDCG@10 (the same fixed sample of users for every run)
against training CPU seconds (validation excluded; ``process_time``, so a run sharing the machine with
another job is measured by its own compute) and examples seen. The target is the reference's best
validation NDCG@10; per mode the script reports the CPU seconds to reach it, the final test
Recall@10 / NDCG@10 (``metrics.json`` when the run has finished, else ``eval_test.json`` from
``evaluate_genrec.py --out``) and the speedup over the reference. A branch (``train_genrec.py --branch-from``,
e.g. ``benchmarks/lr_decay.sh``) is a run like any other: its curve starts with its parent's validations.

Writes ``summary.json`` (``modes`` -> name -> ``cpu_seconds_to_target``, ``test_ndcg@10``,
``test_recall@10``, ``speedup``, plus the curve's state), ``curves.csv`` (every validation of every
run) and ``curves.png`` (NDCG@10 against CPU seconds and against training targets seen).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path

from genrec.eval.report import read_learning_curve


def first_reaching(rows: list[dict], metric: str, target: float) -> dict | None:
    """The first validation whose ``metric`` is at least ``target`` (None if none is)."""
    return next((r for r in rows if r.get(metric, float("-inf")) >= target), None)


def summarize(runs: dict[str, Path], metric: str = "ndcg@10") -> dict:
    curves = {name: read_learning_curve(run / "learning_curve.csv") for name, run in runs.items()}
    reference = next(iter(runs))
    target = max(r[metric] for r in curves[reference])
    ref_hit = first_reaching(curves[reference], metric, target)
    modes = {}
    for name, run in runs.items():
        rows = curves[name]
        metrics_file = run / "metrics.json"
        final = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        # A run stopped before its end has no metrics.json; evaluate_genrec.py --out <run>/eval_test.json ranks its best.
        evaluated = run / "eval_test.json"
        test = final.get("test") or (json.loads(evaluated.read_text())["metrics"] if evaluated.is_file() else {})
        hit = first_reaching(rows, metric, target)
        best = max(rows, key=lambda r: r[metric])
        modes[name] = {
            "run": str(run),
            "cpu_seconds_to_target": hit["cpu_seconds"] if hit else None,
            "examples_to_target": hit["examples_seen"] if hit else None,
            "best_validation": {metric: best[metric], "step": best["step"], "cpu_seconds": best["cpu_seconds"]},
            "last_validation": {metric: rows[-1][metric], "step": rows[-1]["step"], "cpu_seconds": rows[-1]["cpu_seconds"],
                                "examples_seen": rows[-1]["examples_seen"]},
            "validations": len(rows),
            "finished": bool(final),
            "early_stopped": final.get("early_stopped"),
            "test_ndcg@10": test.get("ndcg@10"),
            "test_recall@10": test.get("recall@10"),
            "speedup": (ref_hit["cpu_seconds"] / hit["cpu_seconds"]) if hit and ref_hit else None,
        }
    return {"reference": reference, "metric": metric, "target": target,
            "target_is_converged": bool(modes[reference]["early_stopped"]), "modes": modes}


def write_curves_csv(runs: dict[str, Path], path: Path) -> None:
    lines, columns = [], None
    for name, run in runs.items():
        for row in read_learning_curve(run / "learning_curve.csv"):
            columns = columns or list(row)
            lines.append(",".join([name] + [f"{row.get(c, float('nan')):.6g}" for c in columns]))
    path.write_text(",".join(["mode"] + (columns or [])) + "\n" + "\n".join(lines) + "\n")


def plot(runs: dict[str, Path], path: Path, metric: str, target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for name, run in runs.items():
        rows = read_learning_curve(run / "learning_curve.csv")
        for ax, x in zip(axes, ("cpu_seconds", "examples_seen"), strict=True):
            ax.plot([r[x] / (3600 if x == "cpu_seconds" else 1) for r in rows], [r[metric] for r in rows], marker="o",
                    markersize=3, label=name)
    for ax, label in zip(axes, ("training CPU hours (validation excluded)", "training rows seen (prefix examples; windows for every_item)"),
                         strict=True):
        ax.axhline(target, color="grey", linestyle="--", linewidth=0.8, label=f"target {target:.4f}")
        ax.set_xlabel(label)
        ax.set_ylabel(f"validation {metric} (fixed 3,000-user sample)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="NAME=RUN_DIR, the reference first")
    parser.add_argument("--out", default="benchmarks/results/efficient_training")
    parser.add_argument("--metric", default="ndcg@10")
    args = parser.parse_args()
    runs = {}
    for spec in args.runs:
        name, _, folder = spec.partition("=")
        if not folder or not (Path(folder) / "learning_curve.csv").is_file():
            parser.error(f"{spec}: expected NAME=RUN_DIR with a learning_curve.csv")
        runs[name] = Path(folder)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(runs, args.metric)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    summary["provenance"] = {
        "date": dt.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs ({platform.processor() or 'cpu'})",
        "command": "python benchmarks/efficient_training.py " + " ".join(args.runs), "commit": commit,
        "configs": {name: json.loads((run / "config.json").read_text()) for name, run in runs.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_curves_csv(runs, out / "curves.csv")
    plot(runs, out / "curves.png", args.metric, summary["target"])
    for name, mode in summary["modes"].items():
        print(f"{name:>12}: best {mode['best_validation'][args.metric]:.4f} at step {mode['best_validation']['step']:.0f}; "
              f"target reached after {mode['cpu_seconds_to_target']} CPU s; speedup {mode['speedup']}; "
              f"test NDCG@10 {mode['test_ndcg@10']}")


if __name__ == "__main__":
    main()
