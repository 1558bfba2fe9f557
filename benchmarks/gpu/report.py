"""One GPU job's output folder as a report: test metrics per run, paired tests against a baseline run, curves.

    python benchmarks/gpu/report.py /work/.device/1 --out benchmarks/results/beauty_converged_gpu/ablate \
        --baseline main_seed42

Reads ``results.json`` and ``per_user_<label>.json[.gz]`` (``job.py``'s output, labels from ``job.run_label``) and
writes into ``--out`` (default: the folder itself, so that a committed folder can be reported again): the results and
the per-user files (gzipped), ``learning_curve_<label>.csv`` per run, ``learning_curve.png`` (validation NDCG@10 and
Recall@10 on the fixed user sample against examples seen) and ``report.md`` (per run: steps, examples, training
seconds, test metrics over all users of the checkpoint with the best validation; paired bootstrap tests of every run against ``--baseline`` on the same users).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import numpy as np

from genrec.eval.report import format_p_bootstrap, paired_test, plot_learning_curve
from genrec.tokenizer.io import atomic_write_bytes, atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from job import run_label  # noqa: E402  (job.py is a script beside this one, not a package module)

METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")


def read_per_user(folder: Path, label: str) -> dict:
    for path in (folder / f"per_user_{label}.json", folder / f"per_user_{label}.json.gz"):
        if path.is_file():
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt") as f:
                return json.load(f)
    raise FileNotFoundError(f"{folder}: no per_user_{label}.json(.gz) for the run {label} of results.json")


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="the job's --out folder (results.json, per_user_*.json)")
    parser.add_argument("--out", type=Path, help="where the report goes (default: the folder)")
    parser.add_argument("--baseline", help="the label of the run the others are tested against (default: the first run)")
    args = parser.parse_args(argv)
    out = args.out or args.folder
    out.mkdir(parents=True, exist_ok=True)
    results = json.loads((args.folder / "results.json").read_text())
    runs = {run_label(r["tokenizer"], r["seed"], r.get("variant", "base")): r for r in results["runs"]}
    if not runs and not results.get("rate_probes") and not results.get("batch_sweep"):
        raise ValueError(f"{args.folder / 'results.json'}: no finished runs and no rate measurements")
    baseline = args.baseline or next(iter(runs), None)
    if runs and baseline not in runs:
        raise ValueError(f"--baseline {baseline}: not a run of {args.folder / 'results.json'} ({', '.join(runs)})")
    per_user = {label: read_per_user(args.folder, label) for label in runs}
    curves = {}
    for label, run in runs.items():
        if run.get("learning_curve_csv"):
            curves[label] = out / f"learning_curve_{label}.csv"
            atomic_write_text(curves[label], run["learning_curve_csv"], mode=0o644)
        if out != args.folder or not (args.folder / f"per_user_{label}.json.gz").is_file():
            atomic_write_bytes(out / f"per_user_{label}.json.gz", gzip.compress(json.dumps(per_user[label]).encode()), mode=0o644)
    if out != args.folder:
        atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n", mode=0o644)
    if curves:
        plot_learning_curve(curves, out / "learning_curve.png", x="examples_seen")

    device = results["device"]
    lines = [f"# GPU job `{results['mode']}`, {results['date']}", "",
             f"Device: {device.get('gpu', device.get('cpu_capability'))}; torch {device['torch']}, transformers "
             f"{device['transformers']}; probe {results['probe']['steps_per_second']:.1f} optimizer steps/s. "
             f"Command: `{results['command']}`. Test: all users of the split; validation: the recipe's fixed sample.", ""]
    rates = {f"batch {size}": point for size, point in results.get("batch_sweep", {}).items()}
    rates.update(results.get("rate_probes", {}))
    if rates:  # steady steps/s between a probe's validations; one-off seconds = compiling and warm-up
        lines += ["| rate probe | steps/s (steady) | steps/s (overall) | examples/s | one-off s | note |", "|---|---|---|---|---|---|",
                  f"| the recipe (probe) | {results['probe']['steps_per_second']:.1f} | "
                  f"{results['probe'].get('overall_steps_per_second', float('nan')):.1f} | "
                  f"{results['probe'].get('examples_per_second', float('nan')):,.0f} | - | |"]
        for name, point in rates.items():
            lines.append(f"| {name} | {point.get('steps_per_second', float('nan')):.1f} | "
                         f"{point.get('overall_steps_per_second', float('nan')):.1f} | {point.get('examples_per_second', float('nan')):,.0f} | "
                         f"{point.get('one_off_seconds', float('nan')):.0f} | {point.get('error', '')[:200].replace('|', '/')} |")
        lines.append("")
    if runs:
        lines += ["| run | overrides | steps | examples seen | train s | " + " | ".join(f"test {m}" for m in METRICS)
                  + " | last validation ndcg@10 | tested step (best validation) | continued from |", "|---" * (8 + len(METRICS)) + "|"]
    for label, run in runs.items():
        last = run["learning_curve_csv"].strip().splitlines()[-1].split(",") if run.get("learning_curve_csv") else None
        header = run["learning_curve_csv"].splitlines()[0].split(",") if last else []
        valid = float(last[header.index("ndcg@10")]) if last else float("nan")
        start = run.get("init_from") or {}
        since = f"{start['path']} ({start.get('examples_seen') or 0:,} examples)" if start else "-"
        lines.append(f"| {label} | {' '.join(run.get('overrides', [])) or '-'} | {run['steps']:,} | {run['examples_seen']:,} | "
                     f"{run['train_seconds']:.0f} | " + " | ".join(f"{run['test'][m]:.4f}" for m in METRICS)
                     + f" | {valid:.4f} | {run['best_step']:,} | {since} |")
    if len(runs) > 1:
        lines += ["", f"Paired bootstrap tests against `{baseline}` (same users, 2,000 resamples):", "",
                  "| run | metric | difference | 95% CI | p |", "|---|---|---|---|---|"]
    for label in runs:
        if label == baseline:
            continue
        for metric in ("recall@10", "ndcg@10"):
            test = paired_test(np.asarray(per_user[label][metric], dtype=np.float64),
                               np.asarray(per_user[baseline][metric], dtype=np.float64))
            lines.append(f"| {label} | {metric} | {test['mean_diff']:+.4f} | {test['ci_low']:+.4f} to {test['ci_high']:+.4f} | "
                         f"{format_p_bootstrap(test['p_bootstrap'])} |")
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "report.md", text, mode=0o644)
    print(text)
    return text


if __name__ == "__main__":
    main()
