"""Comparison reports: tables over seeds, paired significance, plots.

Input is one record per finished (tokenizer, seed) run, a plain dict:

    {"tokenizer": "quasid", "seed": 0,
     "metrics": {"recall@10": ..., "ndcg@10": ...},            # test metrics of the recommender
     "tokenizer_metrics": {"collision_rate": ..., "utilization": [...], ...},   # docs/method.md section 7
     "timings": {"tokenizer_train_seconds": ..., "train_seconds": ..., "eval_seconds": ...},
     "per_user": {"ndcg@10": np.ndarray (U,), ...},           # optional: aligned by user index
     "group_sizes": np.ndarray}                               # optional: items per collision group

:func:`write_report` turns a list of them into ``results.csv`` / ``results.json`` (one row per run),
``summary.md`` (mean +- std over seeds per tokenizer, plus paired tests against a baseline) and
PNG plots. Nothing here trains or evaluates: the comparison recipe does that and calls this.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from genrec.tokenizer.io import atomic_write_file, atomic_write_text

SCALAR_TOKENIZER_METRICS = ("collision_rate", "collided_item_share", "max_group_size", "mean_utilization", "sid_entropy_ratio",
                            "mean_hamming", "harmful_near_collision_share", "recon_error")
# The recommender's top-1 relative to the target in the SID tree (a run's metrics.json ``test_top1``,
# genrec.eval.sid_diagnostics.top1_sibling_share): reported beside the tokenizer metrics they explain.
TOP1_DIAGNOSTICS = ("top1_collided_sibling_share", "top1_prefix2_only_share")


def paired_test(a: np.ndarray, b: np.ndarray, num_bootstrap: int = 2000, seed: int = 0) -> dict:
    """Paired comparison of per-user values ``a`` (candidate) and ``b`` (baseline), both (U,).

    Returns the mean difference ``a - b``, its 95% paired-bootstrap interval (users resampled with
    replacement, ``num_bootstrap`` times, seeded), the two-sided bootstrap p-value (share of
    resampled mean differences on the other side of zero, doubled), and the paired t statistic with
    its normal-approximation p-value (U is in the hundreds or thousands, where t ~ normal).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"paired_test needs two aligned 1-d arrays of >= 2 users, got shapes {a.shape} and {b.shape}")
    diff = a - b
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(num_bootstrap, len(diff)))
    boot = diff[idx].mean(axis=1)
    mean = float(diff.mean())
    if mean == 0.0 and not diff.any():
        p_boot = 1.0
    else:
        p_boot = float(min(1.0, 2 * min((boot <= 0).mean(), (boot >= 0).mean())))
    sd = float(diff.std(ddof=1))
    t = mean / (sd / math.sqrt(len(diff))) if sd > 0 else (0.0 if mean == 0 else math.copysign(math.inf, mean))
    return {"mean_diff": mean, "ci_low": float(np.quantile(boot, 0.025)), "ci_high": float(np.quantile(boot, 0.975)),
            "p_bootstrap": p_boot, "t": t, "p_t": float(math.erfc(abs(t) / math.sqrt(2))), "users": len(diff)}


def _flat_row(record: dict) -> dict:
    row = {"tokenizer": record["tokenizer"], "seed": record["seed"]}
    row.update({k: float(v) for k, v in record.get("metrics", {}).items()})
    tok = record.get("tokenizer_metrics", {})
    row.update({k: float(tok[k]) for k in SCALAR_TOKENIZER_METRICS if tok.get(k) is not None})
    top1 = record.get("test_top1") or {}
    row.update({k: float(top1[k]) for k in TOP1_DIAGNOSTICS if top1.get(k) is not None})
    row.update({k: float(v) for k, v in record.get("timings", {}).items()})
    return row


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def summarize(records: list[dict]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """``{tokenizer: {column: (mean, std over seeds, number of seeds)}}`` over every numeric column."""
    rows = [_flat_row(r) for r in records]
    out: dict[str, dict[str, tuple[float, float, int]]] = {}
    for name in dict.fromkeys(r["tokenizer"] for r in rows):
        mine = [r for r in rows if r["tokenizer"] == name]
        columns = dict.fromkeys(k for r in mine for k in r if k not in ("tokenizer", "seed"))
        out[name] = {}
        for col in columns:
            values = [r[col] for r in mine if col in r]
            out[name][col] = (*_mean_std(values), len(values))
    return out


def significance(records: list[dict], baseline: str, metrics: Sequence[str], num_bootstrap: int = 2000) -> dict[str, dict[str, dict]]:
    """Paired tests of every tokenizer against ``baseline`` on per-user metrics averaged over seeds.

    Users are paired by position (every run evaluates the same split in the same user order); each
    tokenizer's per-user value is its mean over its seeds. Tokenizers without per-user values are skipped.
    """
    def per_user_mean(name: str, metric: str) -> np.ndarray | None:
        arrays = [np.asarray(r["per_user"][metric], dtype=np.float64) for r in records
                  if r["tokenizer"] == name and metric in r.get("per_user", {})]
        return np.mean(arrays, axis=0) if arrays else None

    out: dict[str, dict[str, dict]] = {}
    for name in dict.fromkeys(r["tokenizer"] for r in records):
        if name == baseline:
            continue
        for metric in metrics:
            a, b = per_user_mean(name, metric), per_user_mean(baseline, metric)
            if a is None or b is None:
                continue
            if a.shape != b.shape:
                raise ValueError(f"{name} and {baseline} were evaluated on different numbers of users ({len(a)} vs {len(b)})")
            out.setdefault(name, {})[metric] = paired_test(a, b, num_bootstrap=num_bootstrap)
    return out


def format_p_bootstrap(p: float, num_bootstrap: int = 2000) -> str:
    """A bootstrap p-value for a table: 0 means no resample crossed zero, i.e. p < 1 / num_bootstrap."""
    return f"< {1 / num_bootstrap:.2g}" if p == 0 else f"{p:.3g}"


def _fmt(mean: float, std: float, n: int, digits: int = 4) -> str:
    return f"{mean:.{digits}f} +- {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def markdown_summary(summary: dict, tests: dict, metrics: Sequence[str], baseline: str, title: str = "") -> str:
    """The Markdown tables: recommendation metrics, tokenizer metrics and cost (mean +- std over seeds), then the tests."""
    lines = [f"# {title}", ""] if title else []
    seeds = {name: max((v[2] for v in cols.values()), default=0) for name, cols in summary.items()}
    tok_cols = [c for c in (*SCALAR_TOKENIZER_METRICS, *TOP1_DIAGNOSTICS) if any(c in cols for cols in summary.values())]
    time_cols = sorted({c for cols in summary.values() for c in cols if c.endswith("_seconds")})
    header = ["tokenizer", "seeds", *metrics]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, cols in summary.items():
        lines.append("| " + " | ".join([name, str(seeds[name]), *[_fmt(*cols[m]) if m in cols else "-" for m in metrics]]) + " |")
    if tok_cols:
        lines += ["", "| tokenizer | " + " | ".join(tok_cols) + " |", "|" + "---|" * (len(tok_cols) + 1)]
        for name, cols in summary.items():
            if any(c in cols for c in tok_cols):  # references on item IDs have no tokenizer row
                lines.append("| " + " | ".join([name, *[_fmt(*cols[c], digits=4) if c in cols else "-" for c in tok_cols]]) + " |")
    if time_cols:
        lines += ["", "| tokenizer | " + " | ".join(time_cols) + " |", "|" + "---|" * (len(time_cols) + 1)]
        for name, cols in summary.items():
            lines.append("| " + " | ".join([name, *[_fmt(*cols[c], digits=1) if c in cols else "-" for c in time_cols]]) + " |")
    if tests:
        lines += ["", f"Paired tests against `{baseline}` (per-user metrics averaged over seeds; bootstrap over users, "
                  "2,000 resamples; t-test p from the normal approximation):", "",
                  "| tokenizer | metric | mean diff | 95% CI | p (bootstrap) | p (t) | users |", "|---|---|---|---|---|---|---|"]
        for name, per_metric in tests.items():
            for metric, t in per_metric.items():
                lines.append(f"| {name} | {metric} | {t['mean_diff']:+.4f} | [{t['ci_low']:+.4f}, {t['ci_high']:+.4f}] | "
                             f"{format_p_bootstrap(t['p_bootstrap'])} | {t['p_t']:.3g} | {t['users']} |")
    return "\n".join(lines) + "\n"


def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write_text(path, text, mode=0o644)


def read_learning_curve(path: str | Path) -> list[dict[str, float]]:
    """The rows of a ``learning_curve.csv`` written by ``genrec.training.train`` (every value a float)."""
    import csv

    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def plot_learning_curve(curves: str | Path | dict[str, str | Path], png: str | Path, metric: str = "ndcg@10",
                        x: str = "step") -> Path:
    """Validation ``metric`` (and Recall@10 when present) against ``x`` for one or several learning curves.

    ``curves``: one ``learning_curve.csv`` or ``{label: csv}``; ``x``: a column (``step``,
    ``examples_seen``, ``train_seconds``). The PNG is written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = curves if isinstance(curves, dict) else {"": curves}
    panels = [metric] + (["recall@10"] if metric != "recall@10" else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for label, csv_path in curves.items():
        rows = read_learning_curve(csv_path)
        for ax, name in zip(axes[0], panels, strict=True):
            points = [(r[x], r[name]) for r in rows if name in r and x in r]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=label or None)
    for ax, name in zip(axes[0], panels, strict=True):
        ax.set_xlabel(x.replace("_", " "))
        ax.set_ylabel(f"validation {name}")
        ax.grid(alpha=0.3)
        if len(curves) > 1:
            ax.legend(fontsize=8)
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write_file(png, lambda tmp: fig.savefig(tmp, dpi=110, format="png"), mode=0o644)
    finally:
        plt.close(fig)
    return png


def plot_report(records: list[dict], summary: dict, out_dir: Path, metrics: Sequence[str]) -> list[Path]:
    """PNG plots: metric bars with error bars, per-level utilisation, collision-group sizes, metric vs collision rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    written = []

    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(names) * len(metrics) / 2), 4))
    width = 0.8 / max(1, len(metrics))
    for j, metric in enumerate(metrics):
        means = [summary[n].get(metric, (np.nan, 0, 0))[0] for n in names]
        stds = [summary[n].get(metric, (np.nan, 0, 0))[1] for n in names]
        ax.bar(np.arange(len(names)) + j * width, means, width, yerr=stds, capsize=3, label=metric)
    ax.set_xticks(np.arange(len(names)) + width * (len(metrics) - 1) / 2, names, rotation=30, ha="right")
    ax.set(ylabel="test metric (mean +- std over seeds)", title="Recommendation quality")
    ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(out_dir / "metrics.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    util = {r["tokenizer"]: r["tokenizer_metrics"]["utilization"] for r in records
            if r.get("tokenizer_metrics", {}).get("utilization") is not None}
    if util:
        fig, ax = plt.subplots(figsize=(6, 4))
        levels = max(len(v) for v in util.values())
        w = 0.8 / len(util)
        for i, (name, values) in enumerate(util.items()):
            ax.bar(np.arange(len(values)) + i * w, values, w, label=name)
        ax.set_xticks(np.arange(levels) + w * (len(util) - 1) / 2, [f"level {i + 1}" for i in range(levels)])
        ax.set(ylabel="share of codes used", ylim=(0, 1.05), title="Per-level codebook utilisation (first seed)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(out_dir / "utilization.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)

    groups = {r["tokenizer"]: np.asarray(r["group_sizes"]) for r in records if r.get("group_sizes") is not None}
    if groups:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, sizes in groups.items():
            values, counts = np.unique(sizes, return_counts=True)
            ax.plot(values, counts * values / counts.dot(values), "o-", label=name)  # share of items in groups of size s
        ax.set(xscale="log", yscale="log", xlabel="collision group size (items sharing the pre-dedup codes)",
               ylabel="share of items", title="Collision-group size distribution (first seed)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(out_dir / "collision_groups.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)

    metric = metrics[-1]
    points = [(n, summary[n]["collision_rate"], summary[n][metric]) for n in names
              if "collision_rate" in summary[n] and metric in summary[n]]
    if points:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, (cx, _, _), (my, sy, _) in points:
            ax.errorbar(cx, my, yerr=sy, fmt="o", capsize=3)
            ax.annotate(name, (cx, my), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set(xlabel="collision rate (before dedup)", ylabel=f"test {metric}", title=f"{metric} vs collision rate")
        fig.tight_layout()
        written.append(out_dir / "metric_vs_collision.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


def write_report(records: list[dict], out_dir: str | Path, *, baseline: str = "rqvae",
                 metrics: Sequence[str] = ("recall@5", "ndcg@5", "recall@10", "ndcg@10"), title: str = "",
                 plots: bool = True) -> dict:
    """Write results.csv / results.json / summary.md (+ PNGs) for ``records``; returns summary and tests."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not records:
        raise ValueError("write_report: no finished runs to report")
    rows = [_flat_row(r) for r in records]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    csv = [",".join(columns)] + [",".join("" if r.get(c) is None else str(r[c]) for c in columns) for r in rows]
    _atomic_write_text(out_dir / "results.csv", "\n".join(csv) + "\n")
    summary = summarize(records)
    tests = significance(records, baseline, metrics) if any(r["tokenizer"] == baseline for r in records) else {}
    _atomic_write_text(out_dir / "results.json", json.dumps({"runs": rows, "summary": summary, "tests": tests}, indent=1))
    _atomic_write_text(out_dir / "summary.md", markdown_summary(summary, tests, metrics, baseline, title))
    pngs = plot_report(records, summary, out_dir, metrics) if plots else []
    return {"summary": summary, "tests": tests, "plots": [str(p) for p in pngs]}
