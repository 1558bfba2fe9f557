"""genrec.eval.report: summaries over seeds, paired tests, files and plots, on synthetic records."""

import json

import numpy as np
import pytest

from genrec.eval.report import paired_test, summarize, write_report


def record(name, seed, ndcg, per_user=None, collision=0.1):
    return {"tokenizer": name, "seed": seed, "metrics": {"recall@10": 2 * ndcg, "ndcg@10": ndcg},
            "tokenizer_metrics": {"collision_rate": collision, "utilization": [1.0, 0.9, 0.8], "max_group_size": 3},
            "timings": {"train_seconds": 10.0 + seed}, "per_user": {"ndcg@10": per_user} if per_user is not None else {},
            "group_sizes": np.array([1, 1, 2, 3])}


def test_paired_test_detects_a_planted_difference_and_not_a_null_one():
    rng = np.random.default_rng(0)
    base = rng.random(2000)
    better = base + 0.05 + 0.01 * rng.standard_normal(2000)
    same = base + 0.01 * rng.standard_normal(2000)
    strong = paired_test(better, base)
    assert strong["mean_diff"] == pytest.approx(0.05, abs=0.002)
    assert strong["ci_low"] > 0 and strong["p_bootstrap"] < 0.01 and strong["p_t"] < 1e-6
    null = paired_test(same, base)
    assert null["ci_low"] < 0 < null["ci_high"] and null["p_bootstrap"] > 0.01
    assert paired_test(base, base)["p_bootstrap"] == 1.0
    with pytest.raises(ValueError, match="aligned 1-d arrays"):
        paired_test(base[:10], base[:11])


def test_summary_is_mean_and_std_over_seeds():
    records = [record("a", 0, 0.10), record("a", 1, 0.20), record("b", 0, 0.30)]
    s = summarize(records)
    mean, std, n = s["a"]["ndcg@10"]
    assert mean == pytest.approx(0.15) and std == pytest.approx(np.std([0.1, 0.2], ddof=1)) and n == 2
    assert s["b"]["ndcg@10"] == (pytest.approx(0.30), 0.0, 1)
    assert s["a"]["train_seconds"][0] == pytest.approx(10.5)


def test_write_report_files_agree_with_the_records(tmp_path):
    rng = np.random.default_rng(1)
    base_users = rng.random(300)
    records = [record("rqvae", s, 0.1 + 0.01 * s, base_users + 0.001 * s, 0.2) for s in (0, 1)]
    records += [record("quasid", s, 0.2 + 0.01 * s, base_users + 0.1 + 0.001 * s, 0.05) for s in (0, 1)]
    result = write_report(records, tmp_path, baseline="rqvae", metrics=("recall@10", "ndcg@10"), title="toy")
    for name in ("results.csv", "results.json", "summary.md", "metrics.png", "utilization.png", "collision_groups.png",
                 "metric_vs_collision.png"):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["runs"]) == 4
    assert saved["summary"]["quasid"]["ndcg@10"][0] == pytest.approx(0.205)
    assert saved["tests"]["quasid"]["ndcg@10"]["mean_diff"] == pytest.approx(0.1)
    assert "rqvae" not in saved["tests"]
    md = (tmp_path / "summary.md").read_text()
    assert "| quasid | 2 | 0.4100 +- 0.0141 | 0.2050 +- 0.0071 |" in md
    assert "| quasid | ndcg@10 | +0.1000 |" in md
    lines = (tmp_path / "results.csv").read_text().splitlines()
    assert lines[0].startswith("tokenizer,seed,recall@10,ndcg@10") and len(lines) == 5
    assert result["tests"]["quasid"]["ndcg@10"]["p_bootstrap"] < 0.01


def test_mismatched_users_are_an_error(tmp_path):
    records = [record("rqvae", 0, 0.1, np.zeros(10)), record("x", 0, 0.1, np.zeros(11))]
    with pytest.raises(ValueError, match="different numbers of users"):
        write_report(records, tmp_path, plots=False)
    with pytest.raises(ValueError, match="no finished runs"):
        write_report([], tmp_path)
