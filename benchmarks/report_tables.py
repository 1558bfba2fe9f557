"""Print the BENCHMARKS.md tables of a comparison report (``<output_dir>/report/results.json``).

    python benchmarks/report_tables.py runs/compare_ml100k/report [--copy benchmarks/results/compare_ml100k]

One table with mean +- std over seeds of the recommendation metrics (cold/warm columns when the
report has them), the collision rate and the time columns; one with the paired tests on NDCG@10
(and cold:NDCG@10). ``--copy`` also copies the report's Markdown, CSV, JSON and PNGs.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from genrec.eval.report import format_p_bootstrap


def fmt(cell, digits=4):
    if cell is None:
        return "-"
    mean, std, n = cell
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("report")
    p.add_argument("--copy", default=None)
    args = p.parse_args()
    report = Path(args.report)
    data = json.loads((report / "results.json").read_text())
    summary, tests = data["summary"], data["tests"]
    metrics = ["recall@5", "ndcg@5", "recall@10", "ndcg@10"]
    if any("cold:ndcg@10" in cols for cols in summary.values()):
        metrics += ["cold:recall@10", "cold:ndcg@10", "warm:ndcg@10"]
    extra = [("collision_rate", "collision rate", 4), ("tokenizer_train_seconds", "tokenizer s", 0),
             ("recommender_train_seconds", "recommender s", 0), ("test_eval_seconds", "test eval s", 0)]
    print("| tokenizer | seeds | " + " | ".join(metrics + [e[1] for e in extra]) + " |")
    print("|---|---|" + "---|" * (len(metrics) + len(extra)))
    for name, cols in summary.items():
        seeds = max(v[2] for v in cols.values())
        cells = [fmt(cols.get(m)) for m in metrics] + [fmt(cols.get(key), digits) for key, _, digits in extra]
        print(f"| {name} | {seeds} | " + " | ".join(cells) + " |")
    print()
    baseline = next((n for n in summary if n not in tests), "?")
    shown = [m for m in ("ndcg@10", "recall@10", "cold:ndcg@10") if any(m in t for t in tests.values())]
    print(f"Paired tests against `{baseline}` (per-user test metrics averaged over seeds, bootstrap over users):")
    print()
    print("| tokenizer | metric | mean diff | 95% CI | p (bootstrap) | p (t) | users |")
    print("|---|---|---|---|---|---|---|")
    for name, per_metric in tests.items():
        for m in shown:
            if m in per_metric:
                t = per_metric[m]
                print(f"| {name} | {m} | {t['mean_diff']:+.4f} | [{t['ci_low']:+.4f}, {t['ci_high']:+.4f}] | "
                      f"{format_p_bootstrap(t['p_bootstrap'])} | {t['p_t']:.3g} | {t['users']} |")
    if args.copy:
        dest = Path(args.copy)
        dest.mkdir(parents=True, exist_ok=True)
        for f in report.iterdir():
            if f.suffix in (".md", ".csv", ".json", ".png"):
                shutil.copy2(f, dest / f.name)


if __name__ == "__main__":
    main()
