"""SID-token datasets and collators: exact rows, a per-example reference, padding and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrec.data import (
    IGNORE_INDEX,
    CausalCollator,
    Examples,
    Seq2SeqCollator,
    build_causal_dataset,
    build_causal_window_dataset,
    build_seq2seq_dataset,
    leave_one_out_split,
)
from genrec.vocab import EOS_ID, SIDVocab


def make_examples(histories, targets, users):
    lengths = [len(h) for h in histories]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = np.array([i for h in histories for i in h], dtype=np.int64)
    return Examples(np.array(users, dtype=np.int64), np.array(targets, dtype=np.int64), values, offsets)


# Item i has tokens (10 + i, 20 + i): easy to read.
ITEM_TOKENS = np.array([[10 + i, 20 + i] for i in range(5)])


def test_seq2seq_rows_exact():
    ex = make_examples([[0, 3], [4], []], targets=[1, 2, 0], users=[7, 7, 2])
    ds = build_seq2seq_dataset(ex, ITEM_TOKENS)
    assert ds["input_ids"] == [[10, 20, 13, 23, EOS_ID], [14, 24, EOS_ID], [EOS_ID]]
    assert ds["labels"] == [[11, 21], [12, 22], [10, 20]]
    assert ds["target"] == [1, 2, 0] and ds["user_index"] == [7, 7, 2] and ds["length"] == [5, 3, 1]
    calls = []

    def user_token(u):
        calls.append(u)
        return 100 + u

    with_user = build_seq2seq_dataset(ex, torch.as_tensor(ITEM_TOKENS), add_user_token=user_token)
    assert with_user["input_ids"] == [[107, 10, 20, 13, 23, EOS_ID], [107, 14, 24, EOS_ID], [102, EOS_ID]]
    assert with_user["length"] == [6, 4, 2] and sorted(calls) == [2, 7]  # called once per user


def test_causal_rows_exact():
    ex = make_examples([[0, 3], [4]], targets=[1, 2], users=[0, 1])
    ds = build_causal_dataset(ex, ITEM_TOKENS, add_user_token=lambda u: 50 + u)
    assert ds["input_ids"] == [[50, 10, 20, 13, 23, EOS_ID, 11, 21], [51, 14, 24, EOS_ID, 12, 22]]
    assert ds["labels"] == [[IGNORE_INDEX] * 6 + [11, 21], [IGNORE_INDEX] * 4 + [12, 22]]
    assert ds["prompt_length"] == [6, 4] and ds["length"] == [8, 6] and ds["target"] == [1, 2]


def test_causal_window_rows_exact():
    # User 0: items 0 1 2 3 4, windows of max_history + 1 = 3 items from the end: [2 3 4], [0 1 2].
    ds = build_causal_window_dataset([np.array([0, 1, 2, 3, 4]), np.array([3]), np.array([4, 1])], ITEM_TOKENS,
                                     lambda u: 50 + u, max_history=2)
    X = IGNORE_INDEX
    assert ds["input_ids"] == [[50, 12, 22, 13, 23, EOS_ID, 14, 24], [50, 10, 20, 11, 21, EOS_ID, 12, 22], [52, 14, 24, EOS_ID, 11, 21]]
    assert ds["labels"] == [[X, X, X, 13, 23, X, 14, 24], [X, X, X, 11, 21, X, 12, 22], [X, X, X, X, 11, 21]]
    assert ds["target"] == [4, 2, 1] and ds["user_index"] == [0, 0, 2] and ds["prompt_length"] == [6, 6, 4]
    # The rows are build_causal_dataset's (the prompts evaluation decodes from); only the labels differ.
    plain = build_causal_dataset(make_examples([[2, 3], [0, 1], [4]], [4, 2, 1], [0, 0, 2]), ITEM_TOKENS, lambda u: 50 + u)
    assert plain["input_ids"] == ds["input_ids"]

    # Without the eos (model.causal.prompt_eos=false) the last target follows the last history item, as inner ones do.
    no_eos = build_causal_window_dataset([np.array([0, 1, 2, 3, 4]), np.array([3]), np.array([4, 1])], ITEM_TOKENS,
                                         lambda u: 50 + u, max_history=2, eos_id=None)
    assert no_eos["input_ids"] == [[50, 12, 22, 13, 23, 14, 24], [50, 10, 20, 11, 21, 12, 22], [52, 14, 24, 11, 21]]
    assert no_eos["labels"] == [[X, X, X, 13, 23, 14, 24], [X, X, X, 11, 21, 12, 22], [X, X, X, 11, 21]]
    assert no_eos["prompt_length"] == [5, 5, 3]


def test_causal_windows_make_every_training_target_a_target_once():
    rng = np.random.default_rng(1)
    num_items, depth = 40, 3
    tokens = np.arange(num_items * depth).reshape(num_items, depth) + 10  # item of a token: (t - 10) // depth
    rows = [(f"u{u}", f"i{rng.integers(num_items)}", t) for u in range(60) for t in range(int(rng.integers(3, 50)))]
    import pandas as pd

    split = leave_one_out_split(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]),
                                [f"i{k}" for k in range(num_items)], max_history=7)
    ds = build_causal_window_dataset(split.train_sequences, tokens, max_history=7)
    labelled = []
    for user, labels, length in zip(ds["user_index"], ds["labels"], ds["length"], strict=True):
        kept = [t for t in labels if t != IGNORE_INDEX]
        assert len(kept) % depth == 0 and len(labels) == length
        items = [(kept[i] - 10) // depth for i in range(0, len(kept), depth)]
        assert all(kept[i : i + depth] == tokens[item].tolist() for i, item in zip(range(0, len(kept), depth), items, strict=True))
        labelled += [(user, item) for item in items]
        assert len(items) <= 7 and length <= 7 * depth + 1 + depth  # at most max_history items of context
    expected = sorted(zip(split.train.user_index.tolist(), split.train.target.tolist(), strict=True))
    assert sorted(labelled) == expected and len(ds) < len(split.train)


def test_vectorised_build_matches_a_per_example_reference():
    rng = np.random.default_rng(0)
    depth, num_items = 4, 50
    tokens = rng.integers(3, 1000, size=(num_items, depth))
    histories = [rng.integers(0, num_items, size=int(rng.integers(0, 21))).tolist() for _ in range(300)]
    ex = make_examples(histories, rng.integers(0, num_items, 300).tolist(), rng.integers(0, 40, 300).tolist())
    vocab = SIDVocab((8, 8, 8, 8), num_user_tokens=7)
    seq2seq = build_seq2seq_dataset(ex, tokens, add_user_token=vocab.user_token)
    causal = build_causal_dataset(ex, tokens)
    for m in range(len(ex)):
        prompt = [vocab.user_token(int(ex.user_index[m]))] + [t for i in histories[m] for t in tokens[i]] + [EOS_ID]
        target = tokens[ex.target[m]].tolist()
        assert seq2seq[m]["input_ids"] == prompt and seq2seq[m]["labels"] == target
        assert causal[m]["input_ids"] == prompt[1:] + target
        assert causal[m]["labels"] == [IGNORE_INDEX] * (len(prompt) - 1) + target


def test_seq2seq_collator_right_pads():
    ds = build_seq2seq_dataset(make_examples([[0, 3], [4]], [1, 2], [5, 6]), ITEM_TOKENS)
    batch = Seq2SeqCollator(pad_id=0)([ds[0], ds[1]])
    assert set(batch) == {"input_ids", "attention_mask", "labels", "target", "user_index"}
    assert all(v.dtype == torch.long for v in batch.values())
    assert batch["input_ids"].tolist() == [[10, 20, 13, 23, EOS_ID], [14, 24, EOS_ID, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert batch["labels"].tolist() == [[11, 21], [12, 22]]
    assert batch["target"].tolist() == [1, 2] and batch["user_index"].tolist() == [5, 6]
    with pytest.raises(ValueError, match="same length"):
        Seq2SeqCollator()([{"input_ids": [1], "labels": [3, 4]}, {"input_ids": [1], "labels": [3]}])


def test_causal_collator_both_sides():
    ds = build_causal_dataset(make_examples([[0, 3], [4]], [1, 2], [5, 6]), ITEM_TOKENS)
    right = CausalCollator(pad_id=0)([ds[0], ds[1]])
    assert right["input_ids"].tolist() == [[10, 20, 13, 23, EOS_ID, 11, 21], [14, 24, EOS_ID, 12, 22, 0, 0]]
    assert right["labels"].tolist() == [[-100] * 5 + [11, 21], [-100] * 3 + [12, 22, -100, -100]]
    assert right["attention_mask"].tolist() == [[1] * 7, [1] * 5 + [0, 0]]
    assert right["position_ids"].tolist() == [list(range(7)), [0, 1, 2, 3, 4, 4, 4]]
    left = CausalCollator(pad_id=0, padding_side="left")([ds[0], ds[1]])
    assert left["input_ids"].tolist() == [[10, 20, 13, 23, EOS_ID, 11, 21], [0, 0, 14, 24, EOS_ID, 12, 22]]
    assert left["labels"][1].tolist() == [-100] * 5 + [12, 22]
    assert left["attention_mask"][1].tolist() == [0, 0, 1, 1, 1, 1, 1]
    assert left["position_ids"][1].tolist() == [0, 0, 0, 1, 2, 3, 4]
    assert left["prompt_length"].tolist() == [5, 3] and left["target"].tolist() == [1, 2]
    with pytest.raises(ValueError, match="padding_side"):
        CausalCollator(padding_side="middle")


def test_bad_item_tokens():
    ex = make_examples([[0, 9]], [1], [0])
    with pytest.raises(ValueError, match=r"must be \(num_items, D\)"):
        build_seq2seq_dataset(ex, np.arange(5))
    with pytest.raises(ValueError, match="history item index out of range .* 5 rows"):
        build_seq2seq_dataset(ex, ITEM_TOKENS)
    with pytest.raises(ValueError, match="target item index out of range"):
        build_causal_dataset(make_examples([[0]], [-1], [0]), ITEM_TOKENS)
    with pytest.raises(ValueError, match="inconsistent Examples"):
        Examples(np.zeros(2, dtype=np.int64), np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(2, dtype=np.int64))
