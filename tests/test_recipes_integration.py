"""End to end on a small real slice of Amazon Beauty: tokenizer recipe -> genrec recipe -> reload the run.

Needs the shared data (GENREC_DATA_DIR); skipped with a reason when it is absent.
"""

import gzip
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from genrec.runs import open_run

ROOT = Path(__file__).resolve().parents[1]

DATA_DIR = os.environ.get("GENREC_DATA_DIR")
needs_data = pytest.mark.skipif(not DATA_DIR or not (Path(DATA_DIR) / "amazon_beauty").is_dir(),
                                reason="GENREC_DATA_DIR with amazon_beauty/ is not available")
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fresh_accelerator_state")]  # recipes on a real data slice


@pytest.fixture(scope="module")
def beauty_slice(tmp_path_factory):
    """The first 150 users of Beauty and the items they touched, in the standard format."""
    src = Path(DATA_DIR) / "amazon_beauty"
    inter = pd.read_csv(src / "interactions.csv.gz", dtype={"user_id": str, "item_id": str})
    users = inter["user_id"].drop_duplicates().iloc[:150]
    inter = inter[inter["user_id"].isin(users)]
    items = pd.read_json(src / "items.jsonl.gz", lines=True, dtype={"item_id": str})
    items = items[items["item_id"].isin(set(inter["item_id"]))]
    out = tmp_path_factory.mktemp("data") / "beauty_slice"
    out.mkdir()
    inter.to_csv(out / "interactions.csv.gz", index=False)
    with gzip.open(out / "items.jsonl.gz", "wt") as f:
        for rec in items.to_dict("records"):
            f.write(json.dumps(rec) + "\n")
    return out


@pytest.fixture(scope="module")
def slice_cache(tmp_path_factory):
    """One embedding cache for the slice's tests: the slice's texts are embedded once, not once per test."""
    return tmp_path_factory.mktemp("cache")


@needs_data
def test_tokenizer_then_genrec_then_reload(beauty_slice, slice_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("GENREC_CACHE_DIR", str(slice_cache))
    from genrec.recipes import train_genrec, train_tokenizer

    tok_dir = tmp_path / "tok"
    tok_metrics = train_tokenizer.main(["--config", str(ROOT / "recipes/configs/tokenizer_rqvae.yaml"), f"dataset={beauty_slice}",
                                        f"output_dir={tok_dir}", "codebook_sizes=[16,16,16]", "epochs=5", "batch_size=256"])
    for key in ("collision_rate", "mean_utilization", "sid_entropy_ratio", "harmful_near_collision_share", "recon_error"):
        assert key in tok_metrics
    assert 0.0 <= tok_metrics["collision_rate"] < 1.0
    assert (tok_dir / "sid_table.safetensors").exists() and (tok_dir / "metrics.json").exists()

    run_dir = tmp_path / "run"
    overrides = [f"dataset={beauty_slice}", f"tokenizer_dir={tok_dir}", f"output_dir={run_dir}", "num_user_tokens=50",
                 "model.d_model=32", "model.num_layers=1", "model.num_decoder_layers=1", "model.num_heads=2", "model.d_kv=16",
                 "model.d_ff=64", "training.epochs=2", "training.batch_size=64", "training.warmup_steps=5",
                 "eval.num_beams=10", "eval.batch_size=64"]
    metrics = train_genrec.main(["--config", str(ROOT / "recipes/configs/genrec_beauty.yaml"), *overrides])
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["test"] == pytest.approx(metrics["test"])
    for split in ("validation", "test"):
        assert set(saved[split]) == {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}
        assert all(0.0 <= v <= 1.0 for v in saved[split].values())
        assert saved[split]["recall@5"] <= saved[split]["recall@10"]
    assert saved["timings"]["test_users"] == 150

    # The saved run reproduces its test metrics: reload model + vocab + SID table, evaluate again.
    from transformers import T5ForConditionalGeneration

    from genrec.data import Seq2SeqCollator, build_seq2seq_dataset, leave_one_out_split, load_dataset
    from genrec.decoding import PrefixTrie
    from genrec.eval.evaluate import evaluate_generative
    from genrec.tokenizer import SIDTable

    vocab = open_run(run_dir).token_space
    table = SIDTable.load(tok_dir)
    tokens = vocab.codes_to_tokens(table.sids)
    split = leave_one_out_split(load_dataset(beauty_slice))
    test_ds = build_seq2seq_dataset(split.test, tokens, add_user_token=vocab.user_token)
    model = T5ForConditionalGeneration.from_pretrained(run_dir / "best")
    res = evaluate_generative(model, test_ds, PrefixTrie.from_item_tokens(tokens, vocab), Seq2SeqCollator(), num_beams=10, show_progress=False)
    assert res.metrics == pytest.approx(saved["test"])
    # Every recommended item exists in the catalogue.
    assert ((res.ranked_items >= 0) & (res.ranked_items < len(table))).all()
    assert torch.equal(res.user_index, torch.arange(150))


@needs_data
def test_the_converged_recipe_config_trains_decays_and_tests_on_a_slice(beauty_slice, slice_cache, tmp_path, monkeypatch):
    """genrec_beauty_full.yaml as shipped (item-pooled encoder, wsd schedule, resident batches, fast dropout), only
    smaller: it runs to max_steps, its learning rate decays to 0 at the end, and the best validation step is tested."""
    import csv

    monkeypatch.setenv("GENREC_CACHE_DIR", str(slice_cache))
    from genrec.recipes import train_genrec, train_tokenizer

    tok_dir = tmp_path / "tok"
    train_tokenizer.main(["--config", str(ROOT / "recipes/configs/tokenizer_rqvae.yaml"), f"dataset={beauty_slice}",
                          f"output_dir={tok_dir}", "codebook_sizes=[16,16,16]", "epochs=3", "batch_size=256"])
    run_dir = tmp_path / "run"
    metrics = train_genrec.main([
        "--config", str(ROOT / "recipes/configs/genrec_beauty_full.yaml"), f"dataset={beauty_slice}",
        f"tokenizer_dir={tok_dir}", f"output_dir={run_dir}", "model.d_model=32", "model.num_layers=1",
        "model.num_decoder_layers=1", "model.num_heads=2", "model.d_kv=16", "model.d_ff=64", "training.batch_size=32",
        "training.max_steps=24", "training.warmup_steps=4", "training.decay_steps=8", "training.eval_every_steps=8",
        "eval.num_beams=10", "eval.batch_size=64", "eval.valid_max_users=50"])
    assert metrics["steps"] == 24 and metrics["examples_seen"] > 0
    with open(run_dir / "learning_curve.csv") as f:
        curve = list(csv.DictReader(f))
    assert [int(row["step"]) for row in curve] == [8, 16, 24]
    assert float(curve[-1]["learning_rate"]) == pytest.approx(0.0, abs=1e-9)
    assert float(curve[0]["learning_rate"]) > 0.0
    best = max(curve, key=lambda row: float(row["ndcg@10"]))  # the first best on ties, as the trainer keeps it
    assert metrics["best_step"] == int(best["step"])
    assert set(metrics["test"]) == {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}
