import json

import datasets
import numpy as np
import pytest
import torch

from genrec.models import T5RecConfig, build_t5
from genrec.training import LengthBucketBatchSampler, TrainingConfig, train
from genrec.vocab import SIDVocab


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    # AcceleratorState is a process-wide singleton; each test picks its own mixed precision.
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield


TINY = T5RecConfig(d_model=32, num_layers=1, num_decoder_layers=1, num_heads=2, d_kv=16, d_ff=64, dropout_rate=0.0)


def test_bucketing_yields_every_example_once_and_is_reproducible():
    lengths = np.random.default_rng(0).integers(1, 80, size=1003)
    sampler = LengthBucketBatchSampler(lengths, batch_size=32, seed=7, bucket_factor=4)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(1003))
        epochs.append(flat)
    assert epochs[0] != epochs[1]  # a new order every epoch
    again = LengthBucketBatchSampler(lengths, batch_size=32, seed=7, bucket_factor=4)
    again.set_epoch(1)
    assert [i for b in again for i in b] == epochs[1]
    # Batches are length-homogeneous: mean within-batch spread far below the global spread.
    spread = np.mean([np.ptp(lengths[b]) for b in batches if len(b) > 1])
    assert spread < 0.5 * np.ptp(lengths)


def test_the_one_short_batch_comes_last():
    """Accelerate's BatchSamplerShard takes a short batch for the end of the data: a short batch in the
    middle made 2-process training skip batches (5 per process expected, 4 seen)."""
    for n, factor in ((152, 50), (1003, 4), (1003, 1), (64, 2)):
        sampler = LengthBucketBatchSampler(np.arange(n) % 17, batch_size=16, seed=1, bucket_factor=factor)
        for epoch in range(3):
            sampler.set_epoch(epoch)
            sizes = [len(b) for b in sampler]
            assert all(size == 16 for size in sizes[:-1]) and sizes[-1] == (n % 16 or 16)


def _toy_rows(vocab: SIDVocab, n: int = 64, seed: int = 0):
    """Histories of random length whose target is a deterministic function of the last item."""
    rng = np.random.default_rng(seed)
    items = vocab.codes_to_tokens(torch.tensor([[i % 4, i // 4, 0] for i in range(8)])).tolist()
    rows = {"input_ids": [], "labels": [], "length": [], "target": [], "user_index": []}
    for u in range(n):
        hist = rng.integers(0, 8, size=rng.integers(1, 5)).tolist()
        target = (hist[-1] + 1) % 8
        ids = [t for h in hist for t in items[h]] + [1]
        rows["input_ids"].append(ids)
        rows["labels"].append(items[target])
        rows["length"].append(len(ids))
        rows["target"].append(target)
        rows["user_index"].append(u)
    return datasets.Dataset.from_dict(rows)


def _collate(rows):
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": torch.tensor([r["labels"] for r in rows])}


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_train_learns_and_keeps_best_checkpoint(tmp_path, precision):
    vocab = SIDVocab((4, 2, 1))
    torch.manual_seed(0)
    model = build_t5(vocab, TINY)
    ds = _toy_rows(vocab)
    calls = []

    def validate(m, acc):
        # Teacher-forced loss on the training rows as a stand-in metric: higher is better.
        batch = _collate([ds[i] for i in range(len(ds))])
        with torch.no_grad():
            out = m(**batch)
        assert out.logits.dtype == torch.float32  # validation runs in fp32 even when training in bf16
        loss = out.loss.item()
        calls.append(loss)
        return {"ndcg@10": -loss}

    cfg = TrainingConfig(epochs=6, batch_size=16, learning_rate=1e-2, warmup_steps=2, mixed_precision=precision, seed=3)
    result = train(model, ds, _collate, cfg, tmp_path, validate_fn=validate)
    assert len(calls) == 6 and calls[-1] < calls[0]  # it learned
    assert result.best_metric == pytest.approx(-min(calls))
    assert result.best_epoch == int(np.argmin(calls))
    hist = json.loads((tmp_path / "train_history.json").read_text())
    assert [e["epoch"] for e in hist["epochs"]] == list(range(6))
    # The saved best model reproduces the best validation value.
    from transformers import T5ForConditionalGeneration

    reloaded = T5ForConditionalGeneration.from_pretrained(result.best_dir)
    assert validate(reloaded, None)["ndcg@10"] == pytest.approx(result.best_metric, abs=1e-5)


def test_bf16_training_stays_bf16_after_validation(tmp_path):
    """Validation strips the autocast wrapper temporarily; training must get it back."""
    vocab = SIDVocab((4, 2, 1))
    model = build_t5(vocab, TINY)
    dtypes = []
    model.lm_head.register_forward_hook(lambda mod, inp, out: dtypes.append(out.dtype) if mod.training else None)
    cfg = TrainingConfig(epochs=2, batch_size=64, mixed_precision="bf16", warmup_steps=1)
    train(model, _toy_rows(vocab), _collate, cfg, tmp_path, validate_fn=lambda m, a: {"ndcg@10": 0.0})
    assert dtypes and all(d == torch.bfloat16 for d in dtypes)


def test_max_steps_budget_stops_and_still_validates(tmp_path):
    vocab = SIDVocab((4, 2, 1))
    model = build_t5(vocab, TINY)
    cfg = TrainingConfig(epochs=50, max_steps=3, batch_size=16, warmup_steps=1)
    seen = []
    result = train(model, _toy_rows(vocab), _collate, cfg, tmp_path, validate_fn=lambda m, a: seen.append(1) or {"ndcg@10": 0.0})
    assert result.steps == 3 and len(seen) == 1 and (tmp_path / "best" / "model.safetensors").exists()


def test_unknown_metric_for_best_is_an_error(tmp_path):
    vocab = SIDVocab((4, 2, 1))
    cfg = TrainingConfig(epochs=1, batch_size=16, metric_for_best="ndcg@10")
    with pytest.raises(KeyError, match="metric_for_best"):
        train(build_t5(vocab, TINY), _toy_rows(vocab), _collate, cfg, tmp_path, validate_fn=lambda m, a: {"recall@10": 0.1})


def test_bf16_and_fp32_train_on_the_same_batches(tmp_path):
    """Precision changes the arithmetic, never the data order: same seed -> same batches."""
    vocab = SIDVocab((4, 2, 1))
    ds = _toy_rows(vocab, n=100)
    seen = {}
    for precision in ("no", "bf16"):
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
        batches = []

        def collate(rows, batches=batches):
            batches.append(tuple(r["user_index"] for r in rows))
            return _collate(rows)

        cfg = TrainingConfig(epochs=2, batch_size=16, mixed_precision=precision, seed=11, bucket_factor=3)
        train(build_t5(vocab, TINY), ds, collate, cfg, tmp_path / precision)
        seen[precision] = batches
    assert seen["no"] == seen["bf16"]
    assert len(seen["no"]) == 2 * len(LengthBucketBatchSampler(ds["length"], 16, bucket_factor=3))
