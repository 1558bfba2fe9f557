"""Collect the converged Amazon Beauty results (issue 16) into ``benchmarks/results/beauty_converged/``.

    python benchmarks/beauty_converged.py genrec=runs/beauty_full/genrec_every genrec_plain=runs/beauty_full/genrec \\
        sasrec=runs/beauty_full/sasrec --out benchmarks/results/beauty_converged

Each ``name=run_folder`` is a ``recipes/train_genrec.py`` or ``recipes/train_sasrec.py`` output folder. A
finished run contributes its test metrics over all users (``metrics.json``); a run still training
contributes its learning curve and best validation so far, marked ``finished: false`` (nothing is
extrapolated). Writes ``metrics.json`` (per run: test Recall@5/10 and NDCG@5/10, steps, examples seen,
training wall and CPU time, best step, whether early stopping ended it; plus machine, date, commit and the
published anchors), ``learning_curve_<name>.csv`` (copies), ``learning_curve.png`` (every run's validation
NDCG@10 / Recall@10 against steps), ``config_<name>.json`` and ``summary.md`` (the table).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shutil
import subprocess
from pathlib import Path

from genrec.eval.report import plot_learning_curve, read_learning_curve
from genrec.tokenizer.io import atomic_write_json, atomic_write_text

# Published Beauty numbers (leave-one-out, full ranking), the table's reference rows.
ANCHORS = {
    "TIGER (paper)": {"recall@10": 0.0648, "ndcg@10": 0.0384},
    "SASRec, cross-entropy (anchor of the converged-Beauty issue)": {"recall@10": 0.0851, "ndcg@10": 0.0421},
}
METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")


def collect(name: str, run: Path) -> dict:
    curve_path = run / "learning_curve.csv"
    curve = read_learning_curve(curve_path) if curve_path.is_file() else []
    metrics_path = run / "metrics.json"
    final = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    record = {"run": str(run), "finished": final is not None, "validations": len(curve)}
    if curve:
        best = max(curve, key=lambda r: r.get("ndcg@10", float("-inf")))
        last = curve[-1]
        record["best_validation"] = {k: best[k] for k in ("step", "ndcg@10", "recall@10", "examples_seen") if k in best}
        record["last_validation"] = {k: last[k] for k in ("step", "ndcg@10", "recall@10", "examples_seen", "train_seconds",
                                                          "cpu_seconds") if k in last}
    if final is not None:
        timings = final.get("timings", {})
        record.update(test={m: final["test"][m] for m in METRICS if m in final["test"]}, steps=final.get("steps"),
                      examples_seen=final.get("examples_seen"), best_step=final.get("best_step"),
                      early_stopped=final.get("early_stopped"), test_users=timings.get("test_users"),
                      train_seconds=timings.get("train_seconds"), train_cpu_seconds=timings.get("train_cpu_seconds"))
    return record


def table(results: dict) -> str:
    lines = ["| model | state | test R@5 | test N@5 | test R@10 | test N@10 | best validation N@10 (step) | steps | examples seen |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results["runs"].items():
        test = r.get("test", {})
        cells = [f"{test[m]:.4f}" if m in test else "-" for m in METRICS]
        state = ("early-stopped" if r.get("early_stopped") else "finished") if r["finished"] else "still training"
        best = r.get("best_validation", {})
        best_cell = f"{best['ndcg@10']:.4f} ({int(best['step'])})" if best else "-"
        steps = r.get("steps") or r.get("last_validation", {}).get("step")
        seen = r.get("examples_seen") or r.get("last_validation", {}).get("examples_seen")
        lines.append(f"| {name} | {state} | {' | '.join(cells)} | {best_cell} | {int(steps) if steps else '-'} | "
                     f"{int(seen) if seen else '-'} |")
    for name, a in ANCHORS.items():
        lines.append(f"| {name} | published | - | - | {a['recall@10']:.4f} | {a['ndcg@10']:.4f} | - | - | - |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN", help="result name = run folder")
    parser.add_argument("--out", default="benchmarks/results/beauty_converged")
    args = parser.parse_args(argv)
    runs = {}
    for spec in args.runs:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not Path(folder).is_dir():
            parser.error(f"expected NAME=RUN_FOLDER with an existing folder, got {spec!r}")
        runs[name] = Path(folder)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    results = {"date": dt.date.today().isoformat(), "commit": commit,
               "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {platform.python_version()}",
               "command": "python benchmarks/beauty_converged.py " + " ".join(args.runs) + f" --out {args.out}",
               "anchors": ANCHORS, "runs": {name: collect(name, run) for name, run in runs.items()}}
    curves = {}
    for name, run in runs.items():
        if (run / "learning_curve.csv").is_file():
            shutil.copyfile(run / "learning_curve.csv", out / f"learning_curve_{name}.csv")
            curves[name] = out / f"learning_curve_{name}.csv"
        if (run / "config.json").is_file():
            shutil.copyfile(run / "config.json", out / f"config_{name}.json")
    if curves:
        plot_learning_curve(curves, out / "learning_curve.png", x="step")
    atomic_write_json(out / "metrics.json", results, mode=0o644)
    atomic_write_text(out / "summary.md", table(results), mode=0o644)
    print(table(results))
    return results


if __name__ == "__main__":
    main()
