"""Leave-one-out split: exact examples by hand, a slow reference on random data, skips and errors."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from genrec.data import DataError, RecDataset, leave_one_out_split


def frame(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def reference_split(rows, item_ids, max_history, min_interactions):
    """Straightforward per-user version of docs/method.md section 8, for comparison."""
    index = {item: i for i, item in enumerate(item_ids)}
    users = list(dict.fromkeys(u for u, _, _ in rows))
    train, valid, test, kept, skipped = [], [], [], [], []
    for user in users:
        mine = [(t, pos, index[i]) for pos, (u, i, t) in enumerate(rows) if u == user]
        seq = [i for _, _, i in sorted(mine)]  # by time, ties by file position
        if len(seq) < min_interactions:
            skipped.append(user)
            continue
        u = len(kept)
        kept.append(user)
        for t in range(1, len(seq) - 2):
            train.append((u, seq[t], seq[:t][-max_history:]))
        valid.append((u, seq[-2], seq[:-2][-max_history:]))
        test.append((u, seq[-1], seq[:-1][-max_history:]))
    return kept, skipped, train, valid, test


def as_tuples(examples):
    return list(zip(examples.user_index.tolist(), examples.target.tolist(), examples.histories(), strict=True))


def test_hand_made_users_interleaved_ties_and_truncation():
    # Rows of "b" and "a" are interleaved and out of time order; "a" has a tie at t=7 (file order: i3 then i1).
    rows = [("b", "i0", 3), ("a", "i4", 9), ("a", "i3", 7), ("b", "i1", 1), ("a", "i1", 7), ("a", "i0", 2), ("b", "i2", 2),
            ("a", "i2", 8), ("a", "i5", 10), ("a", "i6", 11)]
    items = [f"i{k}" for k in range(7)]
    s = leave_one_out_split(frame(rows), items, max_history=2)
    # b: i1 i2 i0 ; a: i0 i3 i1 i2 i4 i5 i6 (users in order of first appearance)
    assert s.user_ids == ["b", "a"] and s.skipped_users == [] and s.item_ids == items
    assert as_tuples(s.train) == [(1, 3, [0]), (1, 1, [0, 3]), (1, 2, [3, 1]), (1, 4, [1, 2])]
    assert as_tuples(s.valid) == [(0, 2, [1]), (1, 5, [2, 4])]
    assert as_tuples(s.test) == [(0, 0, [1, 2]), (1, 6, [4, 5])]
    assert s.train_item_sequences() == [[1], [0, 3, 1, 2, 4]]  # not truncated
    assert s.max_history == 2


def test_matches_reference_on_random_data():
    rng = np.random.default_rng(0)
    items = [f"item{k}" for k in range(40)]
    rows = [(f"u{int(rng.integers(30))}", items[int(rng.integers(40))], int(rng.integers(12))) for _ in range(600)]
    for max_history, min_interactions in [(20, 3), (4, 3), (3, 25)]:
        s = leave_one_out_split(frame(rows), items, max_history=max_history, min_interactions=min_interactions)
        kept, skipped, train, valid, test = reference_split(rows, items, max_history, min_interactions)
        assert s.user_ids == kept and s.skipped_users == skipped
        assert as_tuples(s.train) == train and as_tuples(s.valid) == valid and as_tuples(s.test) == test
        for ex in (s.train, s.valid, s.test):
            assert ex.history_offsets[0] == 0 and ex.history_offsets[-1] == len(ex.history_values)
            assert ex.history_values.dtype == np.int64 and ex.target.dtype == np.int64
            assert ex.history_lengths.tolist() == [len(h) for h in ex.histories()]


def test_skipped_users_are_listed_and_logged(caplog):
    rows = [("one", "a", 0), ("four", "a", 0), ("four", "b", 1), ("four", "c", 2), ("four", "a", 3), ("two", "a", 0), ("two", "b", 1)]
    with caplog.at_level(logging.WARNING, logger="genrec.data.split"):
        s = leave_one_out_split(frame(rows), ["a", "b", "c"])
    assert s.user_ids == ["four"] and s.skipped_users == ["one", "two"]
    assert "skipped 2 user(s) with fewer than 3 interactions" in caplog.text
    s = leave_one_out_split(frame(rows), ["a", "b", "c"], min_interactions=5)
    assert s.user_ids == [] and s.skipped_users == ["one", "four", "two"]
    assert len(s.train) == len(s.valid) == len(s.test) == 0 and s.test.histories() == []


def test_dataset_input_and_catalogue_override():
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["A", "B", "C"]})
    ds = RecDataset("toy", frame([("u", "c", 0), ("u", "a", 1), ("u", "b", 2)]), items)
    assert leave_one_out_split(ds).test.histories() == [[2, 0]]
    s = leave_one_out_split(ds, item_ids=["c", "b", "a"])  # e.g. the order of a SID table
    assert s.item_ids == ["c", "b", "a"] and s.test.histories() == [[0, 2]] and s.test.target.tolist() == [1]


def test_bad_inputs():
    rows = frame([("u", "a", 0), ("u", "b", 1), ("u", "zz", 2), ("u", "yy", 3)])
    with pytest.raises(DataError, match=r"2 interaction\(s\) reference unknown item ids.*\['zz', 'yy'\]"):
        leave_one_out_split(rows, ["a", "b"])
    with pytest.raises(DataError, match=r"item_ids has duplicates, e.g. \['a'\]"):
        leave_one_out_split(rows, ["a", "b", "a"])
    with pytest.raises(DataError, match=r"lacks column\(s\) \['timestamp'\]"):
        leave_one_out_split(rows.drop(columns="timestamp"), ["a", "b", "zz", "yy"])
    with pytest.raises(ValueError, match="item_ids .* is required"):
        leave_one_out_split(rows)
    with pytest.raises(ValueError, match="min_interactions must be >= 3"):
        leave_one_out_split(rows, ["a", "b", "zz", "yy"], min_interactions=2)
    with pytest.raises(ValueError, match="max_history must be >= 1"):
        leave_one_out_split(rows, ["a", "b", "zz", "yy"], max_history=0)


def test_cold_items_are_held_out_of_training_and_validation_only():
    from genrec.data.split import cold_item_mask, select_cold_items

    rng = np.random.default_rng(3)
    item_ids = [f"i{k}" for k in range(30)]
    rows = [(f"u{u}", f"i{rng.integers(30)}", int(t)) for u in range(40) for t in rng.permutation(12)[: rng.integers(3, 12)]]
    cold = select_cold_items(30, 0.2, seed=5)
    assert cold.sum() == 6 and np.array_equal(cold, select_cold_items(30, 0.2, seed=5))
    assert not np.array_equal(cold, select_cold_items(30, 0.2, seed=6))
    plain = leave_one_out_split(frame(rows), item_ids, max_history=4)
    held = leave_one_out_split(frame(rows), item_ids, max_history=4, cold_items=cold)

    # No cold item anywhere in what a model trains on.
    assert not cold[held.train.target].any() and not cold[held.train.history_values].any()
    # The recipes' setting: the same draw, and no protocol at all (None) at fraction 0.
    assert np.array_equal(cold_item_mask(30, 0.2, seed=5), cold) and cold_item_mask(30, 0.0, seed=5) is None
    assert all(not cold[s].any() for s in held.train_sequences)
    # Training sequences are the plain ones with the cold items removed; examples follow from them.
    for full, kept in zip(plain.train_sequences, held.train_sequences, strict=True):
        assert kept.tolist() == [i for i in full.tolist() if not cold[i]]
    assert len(held.train) == sum(max(len(s) - 1, 0) for s in held.train_sequences)
    # Validation: cold targets (or users with no warm training item) dropped and counted.
    expected_valid = [(u, t) for u, t, s in zip(plain.valid.user_index.tolist(), plain.valid.target.tolist(), held.train_sequences,
                                                strict=True) if not cold[t] and len(s)]
    assert list(zip(held.valid.user_index.tolist(), held.valid.target.tolist(), strict=True)) == expected_valid
    assert held.cold_valid_dropped == len(plain.valid) - len(expected_valid) > 0
    # ... and the cold-target ones kept aside, with the test's kind of history (every earlier item, cold included).
    # (Without the protocol a validation history is every earlier item.)
    expected_cold = [row for row in as_tuples(plain.valid) if cold[row[1]]]
    assert as_tuples(held.valid_cold) == expected_cold and len(expected_cold) > 0
    assert plain.valid_cold is None
    # Test: unchanged, cold targets and histories included; the mask marks the cold targets.
    assert as_tuples(held.test) == as_tuples(plain.test)
    assert np.array_equal(held.cold_test_mask(), cold[plain.test.target]) and held.cold_test_mask().any()
    assert not plain.cold_test_mask().any()


def test_cold_item_errors():
    from genrec.data.split import select_cold_items

    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        select_cold_items(10, 1.0)
    rows = [("u", "a", 1), ("u", "b", 2), ("u", "a", 3)]
    with pytest.raises(ValueError, match=r"\(2,\) bool mask"):
        leave_one_out_split(frame(rows), ["a", "b"], cold_items=np.array([0, 1]))


def test_padded_histories_are_the_histories_padded_on_the_right():
    from genrec.data.split import Examples

    histories = [[3, 1, 4], [1], [5, 9, 2, 6], [5, 3]]
    offsets = np.cumsum([0, *map(len, histories)])
    examples = Examples(user_index=np.arange(4), target=np.zeros(4, dtype=np.int64),
                        history_values=np.concatenate(histories).astype(np.int64), history_offsets=offsets)
    padded = examples.padded_histories()
    assert padded.shape == (4, 4) and padded.dtype == np.int64
    assert [row[row >= 0].tolist() for row in padded] == histories
    assert (padded[1, 1:] == -1).all() and (examples.padded_histories(pad=0)[1, 1:] == 0).all()
