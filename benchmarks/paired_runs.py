"""Test (or validation) metrics, mean ± std over seeds, and paired tests between train_genrec.py runs on the same split.

    python benchmarks/paired_runs.py --baseline t5 t5=runs/beauty/model_types/t5 \
        lora=runs/beauty/model_types/lora causal_every=runs/a,runs/b,runs/c

Each ``name=DIR[,DIR...]`` names one model and its runs (one per seed). A run folder needs
``per_user_test.json`` (written by train_genrec.py, or by ``evaluate_genrec.py --per-user``) and its
test metrics in ``metrics.json`` (``test``) or ``eval_test.json`` (``metrics``). Paired tests use
:func:`genrec.eval.report.significance`: users paired by row, each model's per-user values averaged
over its seeds, so they measure user-level differences, not seed variance. ``--split validation`` reads
``per_user_validation.json`` and ``eval_validation.json`` (``evaluate_genrec.py --split validation``): where
settings are chosen, never on test.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from genrec.eval.report import format_p_bootstrap, significance, summarize

METRICS = ("recall@10", "ndcg@10")


def load_record(name: str, seed: int, run: Path, split: str = "test") -> dict:
    per_user_file = run / f"per_user_{split}.json"
    if not per_user_file.is_file():
        raise FileNotFoundError(f"{per_user_file} is missing: evaluate the run with evaluate_genrec.py --split {split} "
                                f"--per-user {per_user_file} --out {run / f'eval_{split}.json'}")
    per_user = json.loads(per_user_file.read_text())
    saved = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
    if split == "test" and "test" in saved:
        metrics = saved["test"]
    elif (run / f"eval_{split}.json").is_file():
        metrics = json.loads((run / f"eval_{split}.json").read_text())["metrics"]
    else:
        raise FileNotFoundError(f"{run}: no {split} metrics (metrics.json for test, or eval_{split}.json)")
    return {"tokenizer": name, "seed": seed, "metrics": metrics, "user_index": per_user["user_index"],
            "per_user": {m: per_user[m] for m in METRICS}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="the name the others are tested against")
    parser.add_argument("--split", default="test", choices=("test", "validation"),
                        help="validation: choose settings there (per_user_validation.json + eval_validation.json), never on test")
    parser.add_argument("runs", nargs="+", metavar="NAME=DIR[,DIR...]")
    args = parser.parse_args(argv)
    records = []
    for spec in args.runs:
        name, sep, dirs = spec.partition("=")
        if not sep or not dirs:
            raise SystemExit(f"expected NAME=DIR[,DIR...], got {spec!r}")
        records += [load_record(name, seed, Path(d), args.split) for seed, d in enumerate(dirs.split(","))]
    users = records[0]["user_index"]
    for r in records[1:]:
        if r["user_index"] != users:
            raise SystemExit(f"{r['tokenizer']} (run {r['seed']}) was evaluated on other users than {records[0]['tokenizer']}")
    if args.baseline not in {r["tokenizer"] for r in records}:
        raise SystemExit(f"--baseline {args.baseline!r} is not one of the named models")

    summary = summarize(records)
    print("| model | runs | " + " | ".join(f"{args.split} {m} per run | mean ± std" for m in METRICS) + " |")
    print("|---|---|" + "---|---|" * len(METRICS))
    for name, cols in summary.items():
        per_run = {m: " / ".join(f"{r['metrics'][m]:.4f}" for r in records if r["tokenizer"] == name) for m in METRICS}
        print(f"| {name} | {cols[METRICS[0]][2]} | " + " | ".join(f"{per_run[m]} | {cols[m][0]:.4f} ± {cols[m][1]:.4f}" for m in METRICS) + " |")
    print(f"\npaired tests against {args.baseline} ({len(users)} {args.split} users):")
    for name, tests in significance(records, args.baseline, METRICS).items():
        for metric, t in tests.items():
            print(f"  {name} - {args.baseline} {metric}: {t['mean_diff']:+.4f} (95% CI {t['ci_low']:.4f} to {t['ci_high']:.4f}, "
                  f"p_bootstrap {format_p_bootstrap(t['p_bootstrap'])}, p_t {t['p_t']:.3g})")


if __name__ == "__main__":
    main()
