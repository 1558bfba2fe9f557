"""recipes/compare_tokenizers.py end to end on a tiny synthetic dataset: 2 tokenizers x 2 seeds, then a resume."""

import json
import statistics
from pathlib import Path

import pytest
import yaml

from genrec.recipes import compare_tokenizers
from tests._genrec_tiny import TINY_T5, make_dataset

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("fresh_accelerator_state")


def write_config(tmp_path: Path, data: Path) -> Path:
    config = {
        "dataset": str(data), "output_dir": str(tmp_path / "cmp"), "seeds": [0, 1], "baseline": "rq_kmeans",
        "tokenizer_overrides": ["codebook_sizes=[4,4]"],
        "tokenizers": {"rq_kmeans": {"config": "tokenizer_rqkmeans.yaml"}, "random": "tokenizer_random.yaml"},
        "recommender": {"config": "genrec_beauty.yaml",
                        "overrides": [*TINY_T5, "num_user_tokens=8", "training.batch_size=16", "training.epochs=2",
                                      "training.warmup_steps=2", "training.learning_rate=0.01", "eval.num_beams=10", "eval.batch_size=16",
                                      "eval.valid_max_users=null", "training.checkpoint_every_minutes=null"]},
    }
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_compare_two_tokenizers_two_seeds_then_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("GENREC_CACHE_DIR", str(tmp_path / "cache"))  # embeddings of the 30 titles: computed once
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data, _ = make_dataset(tmp_path)
    config = write_config(tmp_path, data)
    out = tmp_path / "cmp"
    compare_tokenizers.main(["--config", str(config)])

    records = {p.stem: json.loads(p.read_text()) for p in (out / "records").glob("*.json")}
    assert sorted(records) == ["random-seed0", "random-seed1", "rq_kmeans-seed0", "rq_kmeans-seed1"]
    for tag, rec in records.items():
        run_metrics = json.loads((out / "runs" / tag / "metrics.json").read_text())
        assert rec["metrics"] == run_metrics["test"]
        assert rec["re_evaluated_test"] == pytest.approx(run_metrics["test"], abs=1e-12)  # the saved model reproduces its metrics
        tok_metrics = json.loads((out / "tokenizers" / tag / "metrics.json").read_text())
        assert rec["tokenizer_metrics"]["collision_rate"] == tok_metrics["collision_rate"]
        assert rec["test_top1"] == run_metrics["test_top1"] and run_metrics["test_top1"]["top1_users"] == 48
    # Different seeds give different tokenizers (random IDs depend on the seed).
    assert records["random-seed0"]["tokenizer_metrics"] != records["random-seed1"]["tokenizer_metrics"] or \
        records["random-seed0"]["metrics"] != records["random-seed1"]["metrics"]

    saved = json.loads((out / "report" / "results.json").read_text())
    assert len(saved["runs"]) == 4
    for name in ("random", "rq_kmeans"):
        values = [records[f"{name}-seed{s}"]["metrics"]["ndcg@10"] for s in (0, 1)]
        mean, std, n = saved["summary"][name]["ndcg@10"]
        assert mean == pytest.approx(statistics.mean(values)) and std == pytest.approx(statistics.stdev(values)) and n == 2
    assert set(saved["tests"]) == {"random"} and saved["tests"]["random"]["ndcg@10"]["users"] == 48
    shares = [records[f"rq_kmeans-seed{s}"]["test_top1"]["top1_collided_sibling_share"] for s in (0, 1)]
    assert saved["summary"]["rq_kmeans"]["top1_collided_sibling_share"][0] == pytest.approx(statistics.mean(shares))
    assert "top1_collided_sibling_share" in (out / "report" / "summary.md").read_text()
    csv_lines = (out / "report" / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 5
    summary = (out / "report" / "summary.md").read_text()
    assert "| rq_kmeans | 2 |" in summary and "Paired tests against `rq_kmeans`" in summary
    for png in ("metrics.png", "utilization.png", "collision_groups.png", "metric_vs_collision.png"):
        assert (out / "report" / png).stat().st_size > 1000, png

    # Resume: finished runs are reused; a run that crashed (no record, a half-written run folder) is redone.
    mtimes = {tag: (out / "records" / f"{tag}.json").stat().st_mtime_ns for tag in records}
    (out / "records" / "random-seed1.json").unlink()
    (out / "runs" / "random-seed1" / "metrics.json").unlink()
    (out / "runs" / "random-seed1" / "half_written.tmp").write_text("x")
    compare_tokenizers.main(["--config", str(config)])
    assert not (out / "runs" / "random-seed1" / "half_written.tmp").exists()
    again = json.loads((out / "records" / "random-seed1.json").read_text())
    assert again["metrics"] == records["random-seed1"]["metrics"]  # same seed, same result
    for tag in ("random-seed0", "rq_kmeans-seed0", "rq_kmeans-seed1"):
        assert (out / "records" / f"{tag}.json").stat().st_mtime_ns == mtimes[tag]
    resumed = json.loads((out / "report" / "results.json").read_text())["summary"]
    for name in ("random", "rq_kmeans"):  # the quality columns are unchanged (timings of the redone run differ)
        for column in ("recall@5", "ndcg@5", "recall@10", "ndcg@10", "collision_rate"):
            assert resumed[name][column] == saved["summary"][name][column], (name, column)


def test_a_run_claimed_by_another_process_is_skipped_and_kept(tmp_path, monkeypatch):
    """Two processes on one comparison split the runs: a claimed run is neither trained again nor deleted."""
    from genrec.training.checkpoint import RunLock

    data, _ = make_dataset(tmp_path)
    config = write_config(tmp_path, data)
    out = tmp_path / "cmp"
    trained = []

    def fake_run_one(cfg, name, seed, log):
        trained.append(f"{name}-seed{seed}")
        return {"metrics": {"ndcg@10": 0.0}}

    monkeypatch.setattr(compare_tokenizers, "run_one", fake_run_one)
    monkeypatch.setattr(compare_tokenizers, "report", lambda cfg: None)
    partial = out / "runs" / "random-seed0"
    partial.mkdir(parents=True)
    (partial / "checkpoint.tmp").write_text("x")
    with RunLock(out / "claims" / "random-seed0"):  # the other process, training random-seed0
        compare_tokenizers.main(["--config", str(config)])
    assert trained == ["rq_kmeans-seed0", "random-seed1", "rq_kmeans-seed1"]  # seed by seed, random-seed0 skipped
    assert (partial / "checkpoint.tmp").exists() and not (out / "records" / "random-seed0.json").exists()
    # Once the claim is released (the other process died), the unfinished run is redone from scratch.
    compare_tokenizers.main(["--config", str(config)])
    assert trained[3:] == ["random-seed0"] and not (partial / "checkpoint.tmp").exists()
    assert sorted(p.stem for p in (out / "records").glob("*.json")) == [
        "random-seed0", "random-seed1", "rq_kmeans-seed0", "rq_kmeans-seed1"]


def test_config_errors(tmp_path):
    from genrec.config import ConfigError

    data, _ = make_dataset(tmp_path)
    config = write_config(tmp_path, data)
    with pytest.raises(ConfigError, match="baseline 'rqvae' is not one of the tokenizers"):
        compare_tokenizers.main(["--config", str(config), "baseline=rqvae"])
    with pytest.raises(ConfigError, match="config file 'nope.yaml' not found"):
        compare_tokenizers.main(["--config", str(config), "tokenizers.random=nope.yaml"])
    with pytest.raises(ConfigError, match=r"tokenizers.random: expected a config file name or"):
        compare_tokenizers.main(["--config", str(config), "tokenizers.random={cfg: x}"])


@pytest.mark.slow
def test_cold_start_comparison_with_a_sasrec_reference(tmp_path, monkeypatch):
    """Cold-start protocol end to end: hold-out tokenizer + recommender, a SASRec reference, cold/warm columns."""
    import numpy as np

    from genrec.data import load_dataset
    from genrec.data.split import leave_one_out_split, select_cold_items

    monkeypatch.setenv("GENREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data, _ = make_dataset(tmp_path)
    config = write_config(tmp_path, data)
    sasrec = {"config": "sasrec.yaml", "overrides": ["model.hidden_size=16", "training.epochs=2", "training.batch_size=16",
                                                     "training.warmup_steps=2", "eval.batch_size=16"]}
    compare_tokenizers.main(["--config", str(config), "seeds=[0]", "tokenizers={rq_kmeans: tokenizer_rqkmeans.yaml}",
                             f"references={{sasrec: {json.dumps(sasrec)}}}", "cold_item_fraction=0.2", "cold_item_seed=1"])
    out = tmp_path / "cmp"
    cold = select_cold_items(30, 0.2, seed=1)
    split = leave_one_out_split(load_dataset(data), cold_items=cold)
    cold_users = split.cold_test_mask()
    assert 0 < cold_users.sum() < len(cold_users)

    tok = json.loads((out / "tokenizers" / "rq_kmeans-seed0" / "metrics.json").read_text())
    assert tok["cold_item_ids"] == [f"i{i}" for i in np.flatnonzero(cold)]
    saved = json.loads((out / "report" / "results.json").read_text())
    for tag, name in (("rq_kmeans-seed0", "rq_kmeans"), ("sasrec-seed0", "sasrec")):
        record = json.loads((out / "records" / f"{tag}.json").read_text())
        per_user = json.loads((out / record["per_user_file"]).read_text())
        values = np.asarray(per_user["ndcg@10"])[np.argsort(per_user["user_index"])]
        assert record["test_cold"]["num_users"] == int(cold_users.sum())
        assert record["test_cold"]["ndcg@10"] == pytest.approx(values[cold_users].mean(), abs=1e-6)
        assert record["test_warm"]["ndcg@10"] == pytest.approx(values[~cold_users].mean(), abs=1e-6)
        assert saved["summary"][name]["cold:ndcg@10"][0] == pytest.approx(values[cold_users].mean(), abs=1e-9)
    run = json.loads((out / "runs" / "rq_kmeans-seed0" / "metrics.json").read_text())
    assert run["cold_items"] == 6 and run["cold_valid_dropped"] > 0
    assert set(saved["tests"]["sasrec"]) >= {"ndcg@10", "cold:ndcg@10"}
    assert saved["tests"]["sasrec"]["cold:ndcg@10"]["users"] == int(cold_users.sum())
    summary = (out / "report" / "summary.md").read_text()
    assert "cold:recall@10" in summary and "| sasrec | 1 |" in summary

    # A recommender whose tokenizer saw the cold items is refused.
    from genrec.recipes import train_genrec

    with pytest.raises(ValueError, match="held out 6 item"):
        train_genrec.main(["--config", str(ROOT / "recipes/configs/genrec_beauty.yaml"), f"dataset={data}",
                           f"tokenizer_dir={out / 'tokenizers' / 'rq_kmeans-seed0'}", f"output_dir={tmp_path / 'x'}",
                           "cold_item_fraction=0.1"])


@pytest.mark.parametrize("path", sorted((ROOT / "recipes" / "configs").glob("compare_*.yaml")), ids=lambda p: p.stem)
def test_packaged_comparison_configs_load_with_every_override(path):
    """A typo in a comparison's overrides would only surface hours into the run: every packaged comparison config,
    its recommender config with the shared overrides and each tokenizer's config with its overrides load cleanly."""
    from genrec.config import load_config
    from genrec.recipes import train_genrec, train_tokenizer

    cfg = load_config(compare_tokenizers.CompareConfig, path)
    assert cfg.baseline in cfg.tokenizers
    recommender = load_config(train_genrec.GenRecConfig, compare_tokenizers._config_path(cfg.recommender.config),
                              cfg.recommender.overrides)
    assert recommender.training.max_steps is None or recommender.training.max_steps > 0
    for name in cfg.tokenizers:
        spec = compare_tokenizers.tokenizer_spec(cfg, name)
        load_config(train_tokenizer.TrainTokenizerConfig, compare_tokenizers._config_path(spec.config),
                    [*cfg.tokenizer_overrides, *spec.overrides])
