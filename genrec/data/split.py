"""Chronological leave-one-out split (docs/method.md section 8, the TIGER protocol).

Per user, the interactions are sorted by timestamp (stable: ties keep file order). With the
user's sequence ``s_0 .. s_{n-1}``:

- test example: target ``s_{n-1}``, history ``s_0 .. s_{n-2}``;
- validation example: target ``s_{n-2}``, history ``s_0 .. s_{n-3}`` (the training part);
- training examples: one per position ``t = 1 .. n-3`` of the training part ``s_0 .. s_{n-3}``:
  target ``s_t``, history ``s_0 .. s_{t-1}``;

every history cut to its last ``max_history`` items (:data:`MAX_HISTORY`), oldest first. A user with n
interactions gives n - 3 training examples, so Beauty (198,502 interactions, 22,363 users) has
131,413 training and 22,363 validation and test examples.

Cold-start protocol (``cold_items``, a boolean mask over the catalogue, e.g. from
:func:`select_cold_items`): the cold items and their interactions are held out of everything a
model trains on. They are removed from every user's training part (so from the training examples
and ``train_sequences``, which feed the collaborative embeddings); a validation example whose
target is cold is dropped (validation picks the model on items it can have learned; the count is
in ``SplitData.cold_valid_dropped``) and kept aside in ``SplitData.valid_cold`` (history: every
earlier interaction, cold items included, as in test), so that cold-start retrieval can be tuned
on validation rather than on test; test examples are kept as they are, cold items included in
histories and targets, as they would arrive after deployment. Metrics on the test examples whose
target is cold measure cold-start retrieval.

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

MAX_HISTORY = 20  # TIGER's history cut; every recipe and reader takes it from SplitSettings


@dataclass
class SplitSettings:
    """What defines a run's split: the history cut and the cold-start hold-out (embedded in the recipes' configs).

    Attributes:
        max_history: history items kept per example, the most recent ones.
        cold_item_fraction: cold-start protocol: hold this fraction of the items out of training (0 = off).
        cold_item_seed: seed of the cold items' draw (:func:`select_cold_items`).
    """

    max_history: int = MAX_HISTORY
    cold_item_fraction: float = 0.0
    cold_item_seed: int = 0

    def __post_init__(self):
        from genrec.config import check_positive, require

        check_positive(self, "max_history")
        require(0.0 <= self.cold_item_fraction < 1.0, f"cold_item_fraction must be in [0, 1), got {self.cold_item_fraction!r}")



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

    def padded_histories(self, pad: int = -1) -> np.ndarray:
        """(M, longest history) int64 item indices, oldest first, each row padded on the right with ``pad``."""
        lengths = self.history_lengths
        out = np.full((len(self), int(lengths.max(initial=0))), pad, dtype=np.int64)
        out[np.arange(out.shape[1])[None, :] < lengths[:, None]] = self.history_values  # row-major: history by history
        return out


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
        cold_items: (num items,) bool mask of the held-out cold items, or None (no cold-start protocol).
        cold_valid_dropped: validation examples dropped because their target is cold (or the user has
            no warm training item).
        valid_cold: the dropped validation examples whose target is cold (None without the protocol),
            for tuning cold-start retrieval; never used to pick a model.
    """

    item_ids: list[str]
    user_ids: list[str]
    train: Examples
    valid: Examples
    test: Examples
    train_sequences: list[np.ndarray]
    skipped_users: list[str]
    max_history: int
    cold_items: np.ndarray | None = None
    cold_valid_dropped: int = 0
    valid_cold: Examples | None = None

    def cold_test_mask(self) -> np.ndarray:
        """(test examples,) bool: the test target is a cold item (all False without the protocol)."""
        if self.cold_items is None:
            return np.zeros(len(self.test), dtype=bool)
        return self.cold_items[self.test.target]

    def cold_test_users(self) -> np.ndarray | None:
        """(number of users,) bool by user index: the user's test target is cold; None without the protocol."""
        if self.cold_items is None:
            return None
        by_user = np.zeros(len(self.user_ids), dtype=bool)
        by_user[self.test.user_index] = self.cold_test_mask()
        return by_user

    def train_item_sequences(self) -> list[list[int]]:
        """``train_sequences`` as lists (row u = user ``user_ids[u]``)."""
        return [s.tolist() for s in self.train_sequences]

    def untrained_items(self) -> np.ndarray:
        """(number of items,) bool: the items no training sequence holds, the cold items of cold-start decoding.

        The cold-start protocol's held-out items, and items that occur only as validation / test targets.
        """
        seen = np.zeros(len(self.item_ids), dtype=bool)
        if self.train_sequences:
            seen[np.concatenate([np.asarray(s, dtype=np.int64) for s in self.train_sequences])] = True
        return ~seen


def _examples(users: list[int], targets: list[int], histories: list[np.ndarray]) -> Examples:
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    offsets = np.zeros(len(histories) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = np.concatenate(histories).astype(np.int64) if histories else np.zeros(0, dtype=np.int64)
    return Examples(np.asarray(users, dtype=np.int64), np.asarray(targets, dtype=np.int64), values, offsets)


def select_cold_items(num_items: int, fraction: float, seed: int = 0) -> np.ndarray:
    """(num_items,) bool mask of ``round(fraction * num_items)`` items drawn uniformly without replacement.

    The draw depends only on ``(num_items, fraction, seed)``, so the tokenizer recipe and the
    recommender recipes pick the same cold items from the same settings.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"cold item fraction must be in [0, 1), got {fraction}")
    mask = np.zeros(num_items, dtype=bool)
    count = int(round(fraction * num_items))
    if count:
        mask[np.random.default_rng(seed).choice(num_items, size=count, replace=False)] = True
    return mask


def cold_item_mask(num_items: int, fraction: float, seed: int = 0) -> np.ndarray | None:
    """The recipes' cold-start setting: :func:`select_cold_items`, or None when ``fraction`` is 0 (no protocol)."""
    return select_cold_items(num_items, fraction, seed) if fraction > 0 else None


def leave_one_out_split(data: RecDataset | pd.DataFrame, item_ids: list[str] | None = None, max_history: int = MAX_HISTORY,
                        min_interactions: int = 3, cold_items: np.ndarray | None = None) -> SplitData:
    """Split ``data`` by chronological leave-one-out.

    Args:
        data: a :class:`RecDataset`, or an interactions frame (``user_id``, ``item_id``, ``timestamp``).
        item_ids: the catalogue order (item index i = ``item_ids[i]``); default the dataset's
            ``item_ids``; required with a frame. Every interaction's item must be in it.
        max_history: keep the last this many history items.
        min_interactions: users with fewer are skipped and counted (at least 3).
        cold_items: optional (num items,) bool mask of items held out of training (the cold-start
            protocol in the module docstring).
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
    if cold_items is not None:
        cold_items = np.asarray(cold_items)
        if cold_items.dtype != bool or cold_items.shape != (len(catalogue),):
            raise ValueError(f"cold_items must be a ({len(catalogue)},) bool mask over the catalogue, "
                             f"got dtype {cold_items.dtype} shape {cold_items.shape}")
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

    kept_users, skipped, cold_valid_dropped = [], [], 0
    train, valid, test, valid_cold = ([], [], []), ([], [], []), ([], [], []), ([], [], [])
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
        if cold_items is not None:
            train_part = train_part[~cold_items[train_part]]
        train_sequences.append(train_part)
        for t in range(1, len(train_part)):
            train[0].append(u)
            train[1].append(train_part[t])
            train[2].append(train_part[max(0, t - max_history):t])
        if cold_items is not None and (cold_items[seq[-2]] or len(train_part) == 0):
            cold_valid_dropped += 1
            if cold_items[seq[-2]]:
                valid_cold[0].append(u)
                valid_cold[1].append(seq[-2])
                valid_cold[2].append(seq[:-2][-max_history:])
        else:
            valid[0].append(u)
            valid[1].append(seq[-2])
            valid[2].append(train_part[-max_history:])
        test[0].append(u)
        test[1].append(seq[-1])
        test[2].append(seq[:-1][-max_history:])
    if skipped:
        logger.warning("leave-one-out split: skipped %d user(s) with fewer than %d interactions (e.g. %s)",
                       len(skipped), min_interactions, skipped[:3])
    if cold_items is not None:
        logger.info("cold-start split: %d cold items held out of training; %d validation example(s) with a cold target "
                    "(or no warm history) dropped; %d of %d test targets are cold", int(cold_items.sum()), cold_valid_dropped,
                    int(cold_items[np.asarray(test[1], dtype=np.int64)].sum()) if test[1] else 0, len(test[1]))
    return SplitData(list(catalogue), kept_users, _examples(*train), _examples(*valid), _examples(*test), train_sequences,
                     skipped, max_history, cold_items=cold_items, cold_valid_dropped=cold_valid_dropped,
                     valid_cold=_examples(*valid_cold) if cold_items is not None else None)
