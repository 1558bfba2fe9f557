"""Chronological leave-one-out split (METHOD.md section 8, TIGER protocol).

Per user, interactions sorted by timestamp (stable: ties keep file order): the last item is the
test target, the second-to-last the validation target, the rest is the training part. Training
examples are every next-item prediction inside the training part: for position t >= 1 the history
is the up-to-``max_history`` items before t. Validation history = the training part, test history
= everything but the last item; both truncated to the last ``max_history`` items.

Users with fewer than ``min_interactions`` (default 3: one train item, one validation, one test)
cannot be split; they are skipped, counted in ``SplitData.skipped_users`` and logged. This is the
standard protocol skip; 5-core datasets have none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from genrec.data.io import DataError, RecDataset

logger = logging.getLogger(__name__)


@dataclass
class Examples:
    """M next-item examples with ragged histories (item indices, oldest first).

    Attributes:
        user_index: (M,) int64 row of the user in ``SplitData.user_ids``.
        target: (M,) int64 item index of the item to predict.
        history_values: (sum of lengths,) int64 concatenated histories.
        history_offsets: (M+1,) int64; history m is ``history_values[offsets[m]:offsets[m+1]]``.
    """

    user_index: np.ndarray
    target: np.ndarray
    history_values: np.ndarray
    history_offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.target)

    def history(self, m: int) -> np.ndarray:
        return self.history_values[self.history_offsets[m] : self.history_offsets[m + 1]]

    def histories(self) -> list[list[int]]:
        return [h.tolist() for h in np.split(self.history_values, self.history_offsets[1:-1])] if len(self) else []

    @property
    def history_lengths(self) -> np.ndarray:
        return np.diff(self.history_offsets)


@dataclass
class SplitData:
    """The split of one dataset; item indices refer to ``item_ids`` (catalogue order)."""

    item_ids: list[str]
    user_ids: list[str]
    train: Examples
    valid: Examples
    test: Examples
    train_sequences: list[np.ndarray]  # each kept user's training part (item indices), for collaborative models
    skipped_users: list[str]
    max_history: int

    def train_item_sequences(self) -> list[list[int]]:
        return [s.tolist() for s in self.train_sequences]


def _examples(users: list[int], targets: list[int], histories: list[np.ndarray]) -> Examples:
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    offsets = np.zeros(len(histories) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = np.concatenate(histories).astype(np.int64) if histories else np.zeros(0, dtype=np.int64)
    return Examples(np.asarray(users, dtype=np.int64), np.asarray(targets, dtype=np.int64), values, offsets)


def leave_one_out_split(data: RecDataset | pd.DataFrame, item_ids: list[str] | None = None, max_history: int = 20, min_interactions: int = 3) -> SplitData:
    """Split ``data`` (a dataset, or an interactions frame plus ``item_ids``) by chronological leave-one-out."""
    if min_interactions < 3:
        raise ValueError("min_interactions must be >= 3 (train, validation and test need one item each)")
    if isinstance(data, RecDataset):
        inter, item_ids = data.interactions, data.item_ids
    else:
        inter = data
        if item_ids is None:
            raise ValueError("item_ids is required when passing an interactions frame")
    index_of = pd.Index(item_ids)
    if not index_of.is_unique:
        raise DataError("item_ids contains duplicates")
    item_index = index_of.get_indexer(inter["item_id"])
    if (item_index < 0).any():
        bad = inter["item_id"][item_index < 0].unique()[:5].tolist()
        raise DataError(f"{int((item_index < 0).sum())} interaction(s) reference unknown item ids, e.g. {bad}")

    user_codes, user_names = pd.factorize(inter["user_id"], sort=False)
    order = np.lexsort((np.arange(len(inter)), inter["timestamp"].to_numpy(), user_codes))
    users_sorted, items_sorted = user_codes[order], item_index[order]
    starts = np.flatnonzero(np.r_[True, users_sorted[1:] != users_sorted[:-1]])
    ends = np.r_[starts[1:], len(order)]

    kept_users, skipped = [], []
    tr, va, te = ([], [], []), ([], [], []), ([], [], [])
    train_sequences = []
    for start, end in zip(starts, ends):
        name = user_names[users_sorted[start]]
        seq = items_sorted[start:end]
        if len(seq) < min_interactions:
            skipped.append(str(name))
            continue
        u = len(kept_users)
        kept_users.append(str(name))
        train_part = seq[:-2]
        train_sequences.append(train_part)
        for t in range(1, len(train_part)):
            tr[0].append(u)
            tr[1].append(int(train_part[t]))
            tr[2].append(train_part[max(0, t - max_history) : t])
        va[0].append(u)
        va[1].append(int(seq[-2]))
        va[2].append(train_part[-max_history:])
        te[0].append(u)
        te[1].append(int(seq[-1]))
        te[2].append(seq[:-1][-max_history:])
    if skipped:
        logger.warning("leave-one-out split: skipped %d user(s) with fewer than %d interactions (e.g. %s)", len(skipped), min_interactions, skipped[:3])
    return SplitData(list(item_ids), kept_users, _examples(*tr), _examples(*va), _examples(*te), train_sequences, skipped, max_history)
