"""Chronological leave-one-out split (METHOD.md section 8, the TIGER protocol).

Per user, the interactions are sorted by timestamp (stable: ties keep file order). With the
user's sequence ``s_0 .. s_{n-1}``:

- test example: target ``s_{n-1}``, history ``s_0 .. s_{n-2}``;
- validation example: target ``s_{n-2}``, history ``s_0 .. s_{n-3}`` (the training part);
- training examples: one per position ``t = 1 .. n-3`` of the training part ``s_0 .. s_{n-3}``:
  target ``s_t``, history ``s_0 .. s_{t-1}``;

every history cut to its last ``max_history`` items (20), oldest first. A user with n
interactions gives n - 3 training examples, so Beauty (198,502 interactions, 22,363 users) has
131,413 training and 22,363 validation and test examples.

Users with fewer than ``min_interactions`` (default 3: one training item plus the validation and
test targets) cannot be split: they are skipped, listed in ``SplitData.skipped_users`` and logged
with a warning. That is the protocol's only skip; 5-core datasets have none.
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
        target: (M,) int64 item index (row of ``SplitData.item_ids``) to predict.
        history_values: (sum of history lengths,) int64 item indices, all histories concatenated.
        history_offsets: (M+1,) int64; history m is ``history_values[history_offsets[m]:history_offsets[m+1]]``.
    """

    user_index: np.ndarray
    target: np.ndarray
    history_values: np.ndarray
    history_offsets: np.ndarray

    def __post_init__(self):
        m = len(self.target)
        if self.user_index.shape != (m,) or self.history_offsets.shape != (m + 1,):
            raise ValueError(f"inconsistent Examples: target {self.target.shape}, user_index {self.user_index.shape}, "
                             f"history_offsets {self.history_offsets.shape} (want (M,), (M,), (M+1,))")
        if self.history_offsets[0] != 0 or self.history_offsets[-1] != len(self.history_values):
            raise ValueError("history_offsets must start at 0 and end at len(history_values)")

    def __len__(self) -> int:
        return len(self.target)

    def history(self, m: int) -> np.ndarray:
        """(length,) item indices of example m's history, oldest first."""
        return self.history_values[self.history_offsets[m]:self.history_offsets[m + 1]]

    def histories(self) -> list[list[int]]:
        """Every history as a list of item indices (Python lists: for small data and tests)."""
        return [h.tolist() for h in np.split(self.history_values, self.history_offsets[1:-1])] if len(self) else []

    @property
    def history_lengths(self) -> np.ndarray:
        """(M,) int64 history lengths."""
        return np.diff(self.history_offsets)


@dataclass
class SplitData:
    """The leave-one-out split of one dataset.

    Attributes:
        item_ids: catalogue order; every item index refers to a row of it.
        user_ids: the kept users, in order of first appearance in the interactions.
        train, valid, test: the examples (see the module docstring); valid and test have one per user.
        train_sequences: each kept user's training part ``s_0 .. s_{n-3}`` (item indices, oldest
            first, not truncated), for collaborative models.
        skipped_users: users with fewer than ``min_interactions`` interactions.
        max_history: the history cut used.
    """

    item_ids: list[str]
    user_ids: list[str]
    train: Examples
    valid: Examples
    test: Examples
    train_sequences: list[np.ndarray]
    skipped_users: list[str]
    max_history: int

    def train_item_sequences(self) -> list[list[int]]:
        """``train_sequences`` as lists (row u = user ``user_ids[u]``)."""
        return [s.tolist() for s in self.train_sequences]


def _examples(users: list[int], targets: list[int], histories: list[np.ndarray]) -> Examples:
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    offsets = np.zeros(len(histories) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = np.concatenate(histories).astype(np.int64) if histories else np.zeros(0, dtype=np.int64)
    return Examples(np.asarray(users, dtype=np.int64), np.asarray(targets, dtype=np.int64), values, offsets)


def leave_one_out_split(data: RecDataset | pd.DataFrame, item_ids: list[str] | None = None, max_history: int = 20,
                        min_interactions: int = 3) -> SplitData:
    """Split ``data`` by chronological leave-one-out.

    Args:
        data: a :class:`RecDataset`, or an interactions frame (``user_id``, ``item_id``, ``timestamp``).
        item_ids: the catalogue order (item index i = ``item_ids[i]``); default the dataset's
            ``item_ids``; required with a frame. Every interaction's item must be in it.
        max_history: keep the last this many history items.
        min_interactions: users with fewer are skipped and counted (at least 3).
    """
    if min_interactions < 3:
        raise ValueError(f"min_interactions must be >= 3 (training, validation and test need one item each), got {min_interactions}")
    if max_history < 1:
        raise ValueError(f"max_history must be >= 1, got {max_history}")
    if isinstance(data, RecDataset):
        interactions = data.interactions
        item_ids = data.item_ids if item_ids is None else item_ids
    else:
        interactions = data
        if item_ids is None:
            raise ValueError("item_ids (the catalogue order) is required when passing an interactions frame")
    missing = [c for c in ("user_id", "item_id", "timestamp") if c not in interactions.columns]
    if missing:
        raise DataError(f"interactions frame lacks column(s) {missing}; columns: {list(interactions.columns)}")
    catalogue = pd.Index(list(item_ids))
    if not catalogue.is_unique:
        raise DataError(f"item_ids has duplicates, e.g. {catalogue[catalogue.duplicated()].unique()[:5].tolist()}")
    item_index = catalogue.get_indexer(interactions["item_id"])
    if (item_index < 0).any():
        unknown = interactions["item_id"][item_index < 0].unique()[:5].tolist()
        raise DataError(f"{int((item_index < 0).sum())} interaction(s) reference unknown item ids (not in item_ids), e.g. {unknown}")

    # Group by user (first-appearance order), then time, then file position: a stable time sort.
    user_codes, user_names = pd.factorize(interactions["user_id"], sort=False)
    order = np.lexsort((np.arange(len(interactions)), interactions["timestamp"].to_numpy(), user_codes))
    users_sorted, items_sorted = user_codes[order], item_index[order].astype(np.int64)
    starts = np.flatnonzero(np.r_[True, users_sorted[1:] != users_sorted[:-1]]) if len(order) else np.zeros(0, dtype=np.int64)
    ends = np.r_[starts[1:], len(order)]

    kept_users, skipped = [], []
    train, valid, test = ([], [], []), ([], [], []), ([], [], [])
    train_sequences = []
    for start, end in zip(starts, ends, strict=True):
        name = str(user_names[users_sorted[start]])
        seq = items_sorted[start:end]
        if len(seq) < min_interactions:
            skipped.append(name)
            continue
        u = len(kept_users)
        kept_users.append(name)
        train_part = seq[:-2]
        train_sequences.append(train_part)
        for t in range(1, len(train_part)):
            train[0].append(u)
            train[1].append(train_part[t])
            train[2].append(train_part[max(0, t - max_history):t])
        valid[0].append(u)
        valid[1].append(seq[-2])
        valid[2].append(train_part[-max_history:])
        test[0].append(u)
        test[1].append(seq[-1])
        test[2].append(seq[:-1][-max_history:])
    if skipped:
        logger.warning("leave-one-out split: skipped %d user(s) with fewer than %d interactions (e.g. %s)",
                       len(skipped), min_interactions, skipped[:3])
    return SplitData(list(catalogue), kept_users, _examples(*train), _examples(*valid), _examples(*test), train_sequences,
                     skipped, max_history)
