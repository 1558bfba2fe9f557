"""Every target of a history window in one pass: a causal-encoder T5 (``model.train_targets=every_item``).

The claims: one pass over a window computes exactly what the prefix examples compute one at a time
(the loss is the mean of their losses; the last target's logits are the inference logits for the
window), the rows label every training target once with its history, and the recipe trains and
decodes real items with it.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from genrec.data import (
    EveryTargetCollator,
    Seq2SeqCollator,
    build_every_target_dataset,
    build_seq2seq_dataset,
    leave_one_out_split,
    load_dataset,
)
from genrec.models import load_model
from genrec.models.t5 import CausalEncoderT5, T5RecConfig, build_t5
from genrec.runs import open_run
from genrec.tokenizer import SIDTable
from genrec.vocab import SIDVocab
from tests._genrec_tiny import ROOT, TINY_T5, make_dataset, recipe_args

pytestmark = pytest.mark.usefixtures("single_thread", "fresh_accelerator_state")

TINY = dict(d_model=32, num_layers=2, num_decoder_layers=2, num_heads=2, d_kv=16, d_ff=64, dropout_rate=0.0)


def _setup(seed: int = 0, n_users: int = 6):
    """A tiny causal-encoder T5, an item -> tokens table and training sequences of 2-9 items."""
    torch.manual_seed(seed)
    vocab = SIDVocab((4, 4, 3), num_user_tokens=5)
    model = build_t5(vocab, T5RecConfig(**TINY, encoder="causal", train_targets="every_item")).eval()
    rng = np.random.default_rng(seed)
    codes = torch.tensor([[i % 4, (i // 4) % 4, i // 16] for i in range(40)])
    tokens = vocab.codes_to_tokens(codes)
    sequences = [rng.integers(0, 40, size=rng.integers(2, 10)) for _ in range(n_users)]
    return vocab, model, tokens, sequences


def test_one_pass_equals_the_prefix_examples_one_at_a_time():
    vocab, model, tokens, sequences = _setup()
    ds = build_every_target_dataset(sequences, tokens, vocab.user_token, max_history=20)
    batch = EveryTargetCollator()([ds[i] for i in range(len(ds))])  # padded: users have 1 to 8 targets
    with torch.no_grad():
        out = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels", "target_starts")})
        losses, last_logits = [], []
        for user, seq in enumerate(sequences):
            for j in range(1, len(seq)):
                prompt = torch.tensor([[vocab.user_token(user), *tokens[seq[:j]].reshape(-1).tolist()]])  # no eos
                one = model(input_ids=prompt, attention_mask=torch.ones_like(prompt), labels=tokens[seq[j]][None])
                losses.append(one.loss)
            last_logits.append(one.logits[0])
    assert out.loss.item() == pytest.approx(torch.stack(losses).mean().item(), abs=1e-6)
    depth = tokens.shape[1]
    for user, seq in enumerate(sequences):
        last = (len(seq) - 2) * depth  # the window's last target block
        torch.testing.assert_close(out.logits[user, last:last + depth], last_logits[user], atol=1e-5, rtol=1e-5)


def test_gradients_equal_the_prefix_examples_gradients():
    vocab, model, tokens, sequences = _setup(seed=1, n_users=3)
    ds = build_every_target_dataset(sequences, tokens, vocab.user_token, max_history=20)
    batch = EveryTargetCollator()([ds[i] for i in range(len(ds))])
    model.zero_grad()
    model(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels", "target_starts")}).loss.backward()
    one_pass = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    prefixes = [(u, j) for u, seq in enumerate(sequences) for j in range(1, len(seq))]
    for user, j in prefixes:
        seq = sequences[user]
        prompt = torch.tensor([[vocab.user_token(user), *tokens[seq[:j]].reshape(-1).tolist()]])
        (model(input_ids=prompt, labels=tokens[seq[j]][None]).loss / len(prefixes)).backward()
    for name, grad in one_pass.items():
        torch.testing.assert_close(grad, model.get_parameter(name).grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("max_history", [20, 3])
def test_rows_label_every_training_target_once_with_its_history(tmp_path, max_history):
    data, tok = make_dataset(tmp_path)
    split = leave_one_out_split(load_dataset(data), max_history=max_history)
    vocab = SIDVocab((4, 4, 2), num_user_tokens=8)
    tokens = vocab.codes_to_tokens(SIDTable.load(tok).sids)
    ds = build_every_target_dataset(split.train_sequences, tokens, vocab.user_token, max_history=max_history)
    depth = tokens.shape[1]
    token_to_item = {tuple(t): i for i, t in enumerate(tokens.tolist())}
    labelled = Counter()
    for row in ds:
        assert row["input_ids"][0] == vocab.user_token(row["user_index"]) and 1 not in row["input_ids"]  # no eos
        targets = [token_to_item[tuple(row["labels"][k:k + depth])] for k in range(0, len(row["labels"]), depth)]
        assert len(targets) == len(row["target_starts"]) == row["num_targets"] and targets[-1] == row["target"]
        for target, start in zip(targets, row["target_starts"], strict=True):
            history = row["input_ids"][1:start]
            items = tuple(token_to_item[tuple(history[k:k + depth])] for k in range(0, len(history), depth))
            labelled[(row["user_index"], items, target)] += 1
    expected = Counter((int(u), tuple(split.train.history(m).tolist()), int(t))
                       for m, (u, t) in enumerate(zip(split.train.user_index, split.train.target, strict=True)))
    if max_history == 20:  # windows hold whole sequences (<= 8 items): exactly the prefix examples
        assert labelled == expected
    else:  # every target once; a history is cut where its window starts
        assert sorted((u, t) for (u, _, t) in labelled.elements()) == sorted((u, t) for (u, _, t) in expected.elements())
        assert all(c == 1 for c in labelled.values()) and all(1 <= len(h) <= max_history for (_, h, _) in labelled)


def test_every_item_needs_the_causal_encoder():
    with pytest.raises(ValueError, match="needs model.encoder=causal"):
        T5RecConfig(train_targets="every_item")
    with pytest.raises(ValueError, match="model.encoder must be one of"):
        T5RecConfig(encoder="left")


@pytest.mark.slow
def test_recipe_trains_every_item_decodes_real_items_and_reloads(tmp_path):
    from genrec.decoding import PrefixTrie
    from genrec.eval.evaluate import evaluate_generative
    from genrec.recipes import train_genrec

    data, tok = make_dataset(tmp_path)
    out = tmp_path / "run"
    metrics = train_genrec.main(["--config", str(ROOT / "recipes/configs/genrec_beauty.yaml"),
                                 *recipe_args(data, tok, out, *TINY_T5, "model.encoder=causal", "model.train_targets=every_item",
                                              "training.epochs=6", "training.mixed_precision=no")])
    history = json.loads((out / "train_history.json").read_text())["epochs"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    model = load_model(out / "best")
    assert isinstance(model, CausalEncoderT5)
    space = open_run(out).token_space
    table = SIDTable.load(tok)
    tokens = space.codes_to_tokens(table.sids)
    trie = PrefixTrie.from_item_tokens(tokens, level_ranges=space.level_ranges)
    split = leave_one_out_split(load_dataset(data))
    test_ds = build_seq2seq_dataset(split.test, tokens, add_user_token=space.user_token_fn, eos_id=None)
    res = evaluate_generative(model, test_ds, trie, Seq2SeqCollator(), num_beams=10, batch_size=16, show_progress=False)
    assert res.metrics == metrics["test"]  # the recipe evaluated on prompts without eos, with the reloaded class
    assert ((res.ranked_items >= 0) & (res.ranked_items < len(table))).all()
    assert all(len(set(row)) == len(row) for row in res.ranked_items.tolist())
