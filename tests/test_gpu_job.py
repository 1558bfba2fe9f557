"""The prepared GPU job (benchmarks/gpu/job.py) in its tiny CPU mode, so that it cannot rot between GPU windows."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import tarfile

import numpy as np
import pytest

from tests._genrec_tiny import ROOT, make_dataset

pytestmark = pytest.mark.usefixtures("single_thread")


def _load_script(name: str):
    """benchmarks/gpu/<name>.py, a script beside the package (not importable by name)."""
    spec = importlib.util.spec_from_file_location(f"gpu_{name}", ROOT / "benchmarks" / "gpu" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_gpu_job_runs_end_to_end_in_tiny_mode(tmp_path):
    job = _load_script("job")
    data, tok = make_dataset(tmp_path)
    out = tmp_path / "out"
    report = job.main(["--mode", "tiny", "--data", str(data), "--tokenizer", str(tok), "--out", str(out),
                       "--work", str(tmp_path / "work")])
    saved = json.loads((out / "results.json").read_text())
    assert saved["summary"] == report["summary"] and set(saved["summary"]["main"]) == {"recall@10", "ndcg@10", "recall@5", "ndcg@5"}
    (run,) = saved["runs"]
    assert run["steps"] > 0 and run["examples_per_second"] > 0 and run["test_users_per_second"] > 0
    assert saved["probe"]["steps_per_second"] > 0 and saved["probe"]["overall_steps_per_second"] > 0
    rate = saved["rate_probes"]["eager_fixed_width"]  # measured in a child process, between validations
    assert rate["steps"] == job.PROBE_STEPS and rate["steps_per_second"] > 0 and "error" not in rate
    # the tiny mode's one sweep point ran at its own batch size (32; the runs' is 16; an epoch's last batch is smaller)
    assert list(saved["batch_sweep"]) == [str(b) for b in job.MODES["tiny"]["sweep"]] == ["32"]
    point = saved["batch_sweep"]["32"]
    assert point["steps"] == job.SWEEP_STEPS and 16 * point["steps"] < point["examples_seen"] <= 32 * point["steps"]
    probe = saved["probe"]
    assert probe["steps"] == job.PROBE_STEPS or probe["steps"] < job.PROBE_STEPS and probe["steps_per_second"] > 0
    rows = list(csv.DictReader(io.StringIO(run["learning_curve_csv"])))  # validations along the run, decayed at its end
    assert len(rows) >= 2 and int(rows[-1]["step"]) == run["steps"]
    assert float(rows[-1]["learning_rate"]) < 0.1 * float(rows[0]["learning_rate"])
    assert 0.0 <= run["test"]["ndcg@10"] <= 1.0 and saved["device"]["torch"]
    # few files come back: the run folder (no checkpoints) packed in parts that reassemble into a loadable run
    assert sorted(p.name for p in out.iterdir()) == ["per_user_main_seed0.json", "results.json", "run_main_seed0.tar.gz.00"]
    assert run["packed_run"] == ["run_main_seed0.tar.gz.00"]
    with tarfile.open(out / "run_main_seed0.tar.gz.00") as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "unpacked", filter="data")
    assert "main_seed0/best/model.safetensors" in names and not any("checkpoints" in n for n in names)
    unpacked = tmp_path / "unpacked" / "main_seed0"
    assert (unpacked / "best" / "model.safetensors").read_bytes() == (tmp_path / "work" / "main_seed0" / "best" / "model.safetensors").read_bytes()
    assert (unpacked / "tokenizer" / "sid_table.safetensors").read_bytes() == (tok / "sid_table.safetensors").read_bytes()
    # the report here afterwards: the run and the rate probes, from the job's folder and again from its own copy
    report_module = _load_script("report")
    text = report_module.main([str(out), "--out", str(tmp_path / "report")])
    assert "| main_seed0 |" in text and "| eager_fixed_width |" in text and "| batch 32 |" in text
    assert f"{run['test']['ndcg@10']:.4f}" in text and (tmp_path / "report" / "learning_curve.png").is_file()
    assert report_module.main([str(tmp_path / "report")]) == text  # per-user files gzipped there: the same report
    # and the weights at the start of the decay, which a later window continues from (--init-from)
    pre = job.pre_decay_step(tmp_path / "work" / "main_seed0")
    assert 0 < pre < run["steps"] and json.loads((unpacked / "pre_decay" / "trainer_state.json").read_text())["steps"] == pre
    assert (unpacked / "pre_decay" / "model.safetensors").read_bytes() == (
        tmp_path / "work" / "main_seed0" / "checkpoints" / f"step-{pre:08d}" / "model.safetensors").read_bytes()
    continued = job.main(["--mode", "tiny", "--data", str(data), "--tokenizer", str(tok), "--out", str(tmp_path / "out2"),
                          "--work", str(tmp_path / "work2"), "--init-from", str(unpacked / "pre_decay"),
                          "--steps-per-second", "97.3"])  # 389 steps: validations at 308 and 385 come after the decay's start (312)
    (again,) = continued["runs"]
    assert again["init_from"]["path"] == str(unpacked / "pre_decay") and again["init_from"]["steps"] == pre
    with tarfile.open(tmp_path / "out2" / "run_main_seed0.tar.gz.00") as tar:  # its own pre-decay weights came back too
        assert json.loads(tar.extractfile("main_seed0/pre_decay/trainer_state.json").read())["steps"] == 389 - int(389 * job.DECAY_FRACTION)
    assert json.loads((tmp_path / "work2" / "main_seed0" / "metrics.json").read_text())["init_from"] == str(unpacked / "pre_decay")


def test_a_packed_run_is_split_into_parts_that_reassemble(tmp_path, monkeypatch):
    job = _load_script("job")
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    (run / "checkpoints" / "step-1").mkdir(parents=True)
    (run / "best" / "model.safetensors").write_bytes(np.random.default_rng(0).bytes(5000))  # incompressible
    (run / "checkpoints" / "step-1" / "state.bin").write_bytes(b"x" * 100)
    monkeypatch.setattr(job, "PART_BYTES", 1024)
    (tmp_path / "out").mkdir()
    parts = job.pack_run(run, tmp_path / "out", "main_seed1")
    assert len(parts) >= 5 and all(p.stat().st_size <= 1024 for p in parts)
    whole = b"".join(p.read_bytes() for p in sorted(parts))
    with tarfile.open(fileobj=io.BytesIO(whole)) as tar:
        assert sorted(tar.getnames()) == ["main_seed1", "main_seed1/best", "main_seed1/best/model.safetensors"]
        assert tar.extractfile("main_seed1/best/model.safetensors").read() == (run / "best" / "model.safetensors").read_bytes()


def test_the_schedule_fits_the_probed_rate_and_decays_at_its_end():
    job = _load_script("job")
    overrides = dict(o.split("=", 1) for o in job.schedule(steps_per_second=25.0, seconds=100))
    assert overrides["training.lr_scheduler"] == "wsd" and int(overrides["training.max_steps"]) == 2500
    assert int(overrides["training.decay_steps"]) == int(2500 * job.DECAY_FRACTION)
    assert int(overrides["training.eval_every_steps"]) * job.VALIDATIONS == 2500
    assert float(overrides["training.max_train_minutes"]) > 100 / 60  # a guard, not the budget
    compiled = dict(o.split("=", 1) for o in job.schedule(steps_per_second=25.0, seconds=100, extra_seconds=job.COMPILE_SECONDS))
    assert compiled["training.max_steps"] == overrides["training.max_steps"]  # the same steps, more time to compile first
    assert float(compiled["training.max_train_minutes"]) * 60 == pytest.approx(
        float(overrides["training.max_train_minutes"]) * 60 + job.COMPILE_SECONDS, abs=0.1)


def test_every_run_of_every_mode_names_a_known_variant():
    job = _load_script("job")
    variants = [run[2] for mode in job.MODES.values() for run in mode["runs"] if len(run) > 2]
    assert "no_dedup_loss" in variants and set(variants) <= set(job.VARIANTS)
    from genrec.recipes import train_genrec

    for name, mode in job.MODES.items():  # every override a GPU window would pass is a setting the recipe reads
        for overrides in [[], *job.VARIANTS.values(), job.COMPILE, *job.RATE_PROBES.values()]:
            cfg = train_genrec.load_config(train_genrec.GenRecConfig, ROOT / "recipes/configs/genrec_beauty_t5.yaml",
                                           [*mode["overrides"], *job.COLD, *overrides])
            assert cfg.training.resident_batches, name


def test_a_rate_probe_that_outlasts_its_time_is_stopped_and_reported(tmp_path):
    job = _load_script("job")
    data, tok = make_dataset(tmp_path)
    result = job.rate_probe("eager_fixed_width", "tiny", str(data), str(tok), tmp_path / "work", timeout=0.5)
    assert result["error"].startswith("stopped after")
    assert result["overrides"] == job.RATE_PROBES["eager_fixed_width"]


def test_a_given_rate_and_length_replace_the_probe(tmp_path, monkeypatch):
    job = _load_script("job")
    calls = []
    monkeypatch.setattr(job, "probe", lambda *a, **k: calls.append("probe"))
    monkeypatch.setattr(job, "run_one", lambda *a: calls.append(a[7:]) or {"tokenizer": "main", "variant": "base", "test": {
        m: 0.5 for m in ("recall@10", "ndcg@10", "recall@5", "ndcg@5")}})
    monkeypatch.setattr(job, "pack_run", lambda *a: [])
    monkeypatch.setattr(job, "device_description", lambda: {})
    report = job.main(["--mode", "long", "--data", "d", "--tokenizer", "t", "--out", str(tmp_path / "out"),
                       "--steps-per-second", "40", "--seconds", "300", "--compile"])
    assert report["probe"] == {"steps_per_second": 40.0, "given": True}
    assert calls == [(40.0, True, "base", 300.0, None)]  # no probe; the run at the given rate, length and compile


def test_the_speed_mode_measures_rates_and_trains_nothing(tmp_path, monkeypatch):
    job = _load_script("job")
    monkeypatch.setattr(job, "probe", lambda *a, **k: {"steps_per_second": 16.0, "overrides": a[6] if len(a) > 6 else ()})
    monkeypatch.setattr(job, "rate_probe", lambda name, *a: {"steps_per_second": {"eager_fixed_width": 16.0}.get(name, 40.0)})
    monkeypatch.setattr(job, "run_one", lambda *a: pytest.fail("the speed mode trains no run"))
    monkeypatch.setattr(job, "device_description", lambda: {})
    report = job.main(["--mode", "speed", "--data", "d", "--tokenizer", "t", "--out", str(tmp_path / "out")])
    assert report["runs"] == [] and report["summary"] == {}
    assert list(report["batch_sweep"]) == [4096, 8192] and report["batch_sweep"][8192]["overrides"] == ("training.batch_size=8192",)
    assert report["rate_probes"] == {"eager_fixed_width": {"steps_per_second": 16.0}, "compiled_fixed_width": {"steps_per_second": 40.0}}
    assert json.loads((tmp_path / "out" / "results.json").read_text())["rate_probes"] == report["rate_probes"]