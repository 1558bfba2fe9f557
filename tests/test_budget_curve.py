"""benchmarks/budget_curve.py: the log-linear trend of test quality against examples seen, and what it implies."""

from __future__ import annotations

import csv
import importlib.util
import json

import numpy as np
import pytest

from tests._genrec_tiny import ROOT


def _budget_curve():
    spec = importlib.util.spec_from_file_location("budget_curve", ROOT / "benchmarks" / "budget_curve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _finished_run(folder, examples: int, ndcg10: float, recall10: float):
    folder.mkdir(parents=True)
    test = {"recall@5": recall10 / 2, "ndcg@5": ndcg10 / 2, "recall@10": recall10, "ndcg@10": ndcg10}
    (folder / "metrics.json").write_text(json.dumps({"examples_seen": examples, "steps": examples // 256, "test": test,
                                                     "timings": {"train_cpu_seconds": 1.0, "test_users": 100}}))
    return folder


def test_the_fit_recovers_a_log_linear_trend_and_solves_it_for_a_target():
    bc = _budget_curve()
    examples = np.array([1e6, 2e6, 4e6, 8e6])
    fit = bc.log_linear_fit(examples, 0.01 + 0.005 * np.log2(examples / 1e6))
    assert fit["per_doubling"] == pytest.approx(0.005)
    assert fit["r2"] == pytest.approx(1.0)
    assert bc.examples_to_reach(fit, 0.03) == pytest.approx(16e6)  # four doublings of 1M: 0.01 + 4 x 0.005
    flat = bc.log_linear_fit(examples, np.array([0.03, 0.02, 0.02, 0.01]))
    assert bc.examples_to_reach(flat, 0.05) is None  # a falling trend reaches nothing


def test_main_writes_the_runs_in_budget_order_and_the_budget_each_target_needs(tmp_path):
    bc = _budget_curve()
    late = _finished_run(tmp_path / "late", 4_000_000, ndcg10=0.030, recall10=0.060)
    early = _finished_run(tmp_path / "early", 2_000_000, ndcg10=0.025, recall10=0.050)
    out = tmp_path / "out"
    summary = bc.main([str(late), str(early), "--out", str(out), "--targets", json.dumps({"ndcg@10": 0.035})])
    rows = list(csv.DictReader((out / "budget_curve.csv").open()))
    assert [int(r["examples_seen"]) for r in rows] == [2_000_000, 4_000_000]
    assert summary["fits"]["ndcg@10"]["examples_to_reach_target"] == pytest.approx(8_000_000)  # +0.005 per doubling
    assert "examples_to_reach_target" not in summary["fits"]["recall@10"]  # no target given for it
    assert (out / "budget_curve.png").stat().st_size > 0
    assert json.loads((out / "metrics.json").read_text())["runs"][0]["run"] == str(early)


def test_a_runs_budget_is_what_its_tested_weights_saw(tmp_path):
    bc = _budget_curve()
    run = _finished_run(tmp_path / "run", 3_000_000, ndcg10=0.03, recall10=0.06)
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "best_step": 1000}))
    (run / "learning_curve.csv").write_text("step,examples_seen,ndcg@10\n1000,256000,0.03\n2000,512000,0.029\n")
    record = bc.read_run(run)
    assert record["examples_tested"] == 256_000  # best/ holds step 1,000's weights
    assert record["examples_seen"] == 3_000_000


def test_an_unfinished_run_is_named(tmp_path):
    bc = _budget_curve()
    done = _finished_run(tmp_path / "done", 2_000_000, ndcg10=0.025, recall10=0.050)
    (tmp_path / "running").mkdir()
    with pytest.raises(FileNotFoundError, match="running"):
        bc.main([str(done), str(tmp_path / "running"), "--out", str(tmp_path / "out")])
