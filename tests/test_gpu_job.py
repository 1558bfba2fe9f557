"""The prepared GPU job (benchmarks/gpu/job.py) in its tiny CPU mode, so that it cannot rot between GPU windows."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tests._genrec_tiny import ROOT, make_dataset

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.slow
def test_the_gpu_job_runs_end_to_end_in_tiny_mode(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_job", ROOT / "benchmarks" / "gpu" / "job.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    data, tok = make_dataset(tmp_path)
    out = tmp_path / "out"
    report = job.main(["--mode", "tiny", "--data", str(data), "--tokenizer", str(tok), "--out", str(out),
                       "--work", str(tmp_path / "work")])
    saved = json.loads((out / "results.json").read_text())
    assert saved["summary"] == report["summary"] and set(saved["summary"]["main"]) == {"recall@10", "ndcg@10", "recall@5", "ndcg@5"}
    (run,) = saved["runs"]
    assert run["steps"] > 0 and run["examples_per_second"] > 0 and run["test_users_per_second"] > 0
    assert 0.0 <= run["test"]["ndcg@10"] <= 1.0 and saved["device"]["torch"]
    assert sorted(p.name for p in out.iterdir()) == ["per_user_main_seed0.json", "results.json"]  # few files come back
