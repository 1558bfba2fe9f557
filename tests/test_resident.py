"""The GPU training paths, exercised on CPU: resident batches (the collated training set on the device, batches
gathered by index) and a compiled training forward. The claims: a resident batch is exactly what the run's
collator builds for the same rows (every collator genrec trains with); rounded widths only add padding; and
training through either path computes what the plain path computes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from genrec.data import (
    IGNORE_INDEX,
    CausalCollator,
    EveryTargetCollator,
    Seq2SeqCollator,
    build_causal_window_dataset,
    build_every_target_dataset,
    build_seq2seq_dataset,
)
from genrec.models import build_t5
from genrec.training import TrainingConfig, train
from genrec.training.resident import ResidentBatches
from genrec.vocab import SIDVocab
from tests.helpers import TRAINING_T5, toy_rows
from tests.test_data_sequences import make_examples

pytestmark = pytest.mark.usefixtures("single_thread", "fresh_accelerator_state")

DEPTH = 3


def _training_sets():
    """(rows, collator) for each way genrec builds training rows: prefix examples, every-target windows, causal windows."""
    rng = np.random.default_rng(0)
    vocab = SIDVocab((4, 4, 3), num_user_tokens=5)
    tokens = vocab.codes_to_tokens(torch.tensor([[i % 4, (i // 4) % 4, i // 16] for i in range(40)]))
    sequences = [rng.integers(0, 40, size=rng.integers(2, 12)) for _ in range(30)]
    histories = [s[: rng.integers(1, len(s))] for s in sequences]
    examples = make_examples(histories, [int(s[-1]) for s in sequences], list(range(len(sequences))))
    return {
        "seq2seq": (build_seq2seq_dataset(examples, tokens, vocab.user_token), Seq2SeqCollator()),
        "every_target": (build_every_target_dataset(sequences, tokens, vocab.user_token, max_history=8), EveryTargetCollator()),
        "causal_window": (build_causal_window_dataset(sequences, tokens, vocab.user_token, max_history=8), CausalCollator()),
    }


@pytest.mark.parametrize("kind", ["seq2seq", "every_target", "causal_window"])
def test_a_resident_batch_is_what_the_collator_builds(kind):
    rows, collator = _training_sets()[kind]
    resident = ResidentBatches(rows, collator)
    rng = np.random.default_rng(1)
    for size in (1, 3, 8, len(rows)):
        indices = rng.permutation(len(rows))[:size].tolist()
        expected, got = collator([rows[i] for i in indices]), resident.collate(indices)
        assert expected.keys() == got.keys()
        for name in expected:
            assert torch.equal(expected[name], got[name]), name


@pytest.mark.parametrize("kind", ["seq2seq", "every_target"])
def test_rounded_widths_only_add_padding(kind):
    rows, collator = _training_sets()[kind]
    resident = ResidentBatches(rows, collator, pad_to_multiple_of=4)
    pads = {"input_ids": 0, "attention_mask": 0, "labels": IGNORE_INDEX, "target_starts": 0}
    rng = np.random.default_rng(2)
    for _ in range(10):
        indices = rng.permutation(len(rows))[: int(rng.integers(1, 9))].tolist()
        expected, got = collator([rows[i] for i in indices]), resident.collate(indices)
        for name, tensor in expected.items():
            wide = got[name]
            if tensor.ndim == 1:
                assert torch.equal(tensor, wide)
                continue
            width = tensor.shape[1]
            full = resident.tensors[name].shape[1]
            assert wide.shape[1] == full or wide.shape[1] % (4 * resident.units[name]) == 0, name
            assert torch.equal(wide[:, :width], tensor) and bool((wide[:, width:] == pads[name]).all()), name
        if kind == "every_target":  # D label tokens per target: the two target fields stay consistent
            assert got["labels"].shape[1] == DEPTH * got["target_starts"].shape[1]
    few_shapes = {tuple(resident.collate([i])["input_ids"].shape) for i in range(len(rows))}
    exact_shapes = {len(rows[i]["input_ids"]) for i in range(len(rows))}
    assert len(few_shapes) < len(exact_shapes)


def test_a_left_padding_collator_is_refused():
    rows, _ = _training_sets()["causal_window"]
    with pytest.raises(ValueError, match="right-padding"):
        ResidentBatches(rows, CausalCollator(padding_side="left"))


def _train(tmp_path, name, **settings):
    vocab = SIDVocab((4, 2, 1))
    torch.manual_seed(0)
    model = build_t5(vocab, TRAINING_T5)
    cfg = TrainingConfig(epochs=2, batch_size=16, learning_rate=1e-2, warmup_steps=2, mixed_precision="no", seed=3,
                         log_every_steps=1, **settings)
    result = train(model, toy_rows(vocab), Seq2SeqCollator(), cfg, tmp_path / name)
    return [e["train_loss"] for e in result.history], [p.detach().clone() for p in model.parameters()]


def test_training_on_resident_batches_is_the_plain_computation(tmp_path):
    plain_losses, plain_weights = _train(tmp_path, "plain")
    losses, weights = _train(tmp_path, "resident", resident_batches=True)
    assert losses == plain_losses  # the same batches, the same arithmetic: bit for bit
    assert all(torch.equal(a, b) for a, b in zip(plain_weights, weights, strict=True))
    padded_losses, _ = _train(tmp_path, "padded", resident_batches=True, pad_to_multiple_of=8)
    assert padded_losses == pytest.approx(plain_losses, rel=1e-5)  # a few more masked padding columns


def test_a_compiled_training_forward_computes_the_plain_losses(tmp_path):
    from torch._dynamo.utils import counters

    plain_losses, plain_weights = _train(tmp_path, "plain")
    torch._dynamo.reset()
    counters.clear()
    # aot_eager: dynamo's graph capture and AOT autograd without generating C++ (seconds on CPU); rounded widths
    # keep the number of shapes (each a graph to trace) small, as on a GPU.
    losses, weights = _train(tmp_path, "compiled", compile=True, compile_backend="aot_eager", resident_batches=True,
                             pad_to_multiple_of=16)
    assert counters["stats"]["unique_graphs"] == 1  # it compiled one graph (the rows are at most 13 tokens: one shape)
    assert losses == pytest.approx(plain_losses, rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(plain_weights, weights, strict=True))


def test_gpu_path_settings_are_checked():
    with pytest.raises(ValueError, match="num_workers"):
        TrainingConfig(resident_batches=True, num_workers=2)
    with pytest.raises(ValueError, match="resident_batches"):
        TrainingConfig(pad_to_multiple_of=8)
    with pytest.raises(ValueError, match="compile_mode"):
        TrainingConfig(compile=True, compile_mode="fastest")


def test_fast_dropout_drops_p_scales_the_rest_and_is_seeded():
    from genrec.training.fast_dropout import FastDropout

    x = torch.ones(1000, 1000)
    layer = FastDropout(0.1)
    torch.manual_seed(0)
    y = layer(x)
    dropped = float((y == 0).float().mean())
    assert abs(dropped - 0.1) < 0.002  # 1M draws: the standard error is 0.0003
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.9))
    torch.manual_seed(0)
    assert torch.equal(layer(x), y)  # the global generator: seeded runs repeat
    assert torch.equal(layer.eval()(x), x) and torch.equal(FastDropout(0.0)(x), x)
    g = torch.randn(50, 40, requires_grad=True)
    out = FastDropout(0.3).train()(g)
    out.sum().backward()
    assert torch.equal(g.grad, (out != 0).float() / 0.7)  # the gradient passes the kept elements, scaled
    with pytest.raises(ValueError, match="probability"):
        FastDropout(1.0)


def test_training_with_fast_dropout_learns_and_gives_the_model_back(tmp_path):
    vocab = SIDVocab((4, 2, 1))
    torch.manual_seed(0)
    model = build_t5(vocab, dataclasses.replace(TRAINING_T5, dropout_rate=0.1))
    dropouts = [type(m) for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts
    seen = []
    original_forward = type(model).forward

    def spy(self, *args, **kwargs):
        seen.append(sum(type(m).__name__ == "FastDropout" for m in self.modules()))
        return original_forward(self, *args, **kwargs)

    model.forward = spy.__get__(model)
    cfg = TrainingConfig(epochs=3, batch_size=16, learning_rate=1e-2, warmup_steps=2, mixed_precision="no", seed=3,
                         fast_dropout=True)
    result = train(model, toy_rows(vocab), Seq2SeqCollator(), cfg, tmp_path)
    assert seen and all(count == len(dropouts) for count in seen)  # every nn.Dropout was swapped while training
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert [type(m) for m in model.modules() if isinstance(m, torch.nn.Dropout)] == dropouts  # and put back
