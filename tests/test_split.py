"""Leave-one-out split on hand-made data: exact histories, targets, truncation, ties and skips."""

import numpy as np
import pandas as pd
import pytest

from genrec.data import DataError, leave_one_out_split


def frame(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def test_exact_examples_with_ties_and_order():
    # u1's rows are out of time order in the file; the tie at t=5 keeps file order (b before c).
    inter = frame([("u1", "d", 9), ("u1", "a", 1), ("u1", "b", 5), ("u1", "c", 5), ("u1", "e", 10), ("u2", "c", 0), ("u2", "a", 1), ("u2", "b", 2)])
    items = ["a", "b", "c", "d", "e"]
    s = leave_one_out_split(inter, items, max_history=20)
    a, b, c, d, e = range(5)
    # u1 chronological: a b c d e -> train part a b c, valid target d, test target e.
    assert s.user_ids == ["u1", "u2"]
    assert s.train.histories() == [[a], [a, b]] and s.train.target.tolist() == [b, c]
    assert s.valid.histories() == [[a, b, c], [c]] and s.valid.target.tolist() == [d, a]
    assert s.test.histories() == [[a, b, c, d], [c, a]] and s.test.target.tolist() == [e, b]
    assert s.valid.user_index.tolist() == [0, 1] and s.train.user_index.tolist() == [0, 0]
    assert s.train_item_sequences() == [[a, b, c], [c]]


def test_history_truncated_to_max_history():
    inter = frame([("u", str(i), i) for i in range(30)])
    s = leave_one_out_split(inter, [str(i) for i in range(30)], max_history=20)
    assert s.test.history(0).tolist() == list(range(9, 29))
    assert s.valid.history(0).tolist() == list(range(8, 28))
    assert len(s.train) == 27  # targets 1..27
    assert s.train.history(26).tolist() == list(range(7, 27))
    assert s.train.history_lengths.max() == 20


def test_short_users_are_skipped_and_counted(caplog):
    inter = frame([("ok", "a", 0), ("ok", "b", 1), ("ok", "c", 2), ("short", "a", 0), ("short", "b", 1)])
    s = leave_one_out_split(inter, ["a", "b", "c"])
    assert s.user_ids == ["ok"] and s.skipped_users == ["short"]
    assert "skipped 1 user" in caplog.text


def test_unknown_items_are_an_error():
    with pytest.raises(DataError, match="unknown item ids.*'zz'"):
        leave_one_out_split(frame([("u", "zz", 0)]), ["a"])


def test_ragged_storage_is_consistent():
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", str(rng.integers(50)), t) for u in range(20) for t in range(int(rng.integers(3, 30)))]
    s = leave_one_out_split(frame(rows), [str(i) for i in range(50)], max_history=5)
    for ex in (s.train, s.valid, s.test):
        assert ex.history_offsets[-1] == len(ex.history_values)
        assert len(ex.histories()) == len(ex)
        assert all(len(h) <= 5 for h in ex.histories())
