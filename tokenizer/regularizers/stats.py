"""Per-epoch diagnostics of a regulariser (pair counts, unweighted term values), outside the loss.

Every regulariser here has a ``stats`` attribute, an :class:`EpochStats` reset by ``on_epoch_start``:
counts are summed over the epoch's batches, values are averaged over them. Keys are namespaced by
the term name (``rep/pairs``, ``rep/masked_near_duplicate``, ``cf/raw``). A training loop can copy
``dict(reg.stats)`` into its history after each epoch; the RQ-VAE loop's ``callback`` sees the
regularisers through closure.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping


class EpochStats(Mapping):
    """Read-only mapping key -> float of this epoch's diagnostics."""

    def __init__(self):
        self._sums: dict[str, float] = {}
        self._batches: dict[str, int] = {}
        self._means: set[str] = set()

    def reset(self) -> None:
        self._sums.clear()
        self._batches.clear()
        self._means.clear()

    def count(self, key: str, value: float) -> None:
        """Add ``value`` to the epoch's total for ``key``."""
        self._sums[key] = self._sums.get(key, 0.0) + float(value)

    def mean(self, key: str, value: float) -> None:
        """Record one batch's ``value``; the key reads as the mean over the epoch's batches (NaNs skipped)."""
        value = float(value)
        self._means.add(key)
        if value == value:  # NaN: nothing to average this batch
            self._sums[key] = self._sums.get(key, 0.0) + value
            self._batches[key] = self._batches.get(key, 0) + 1

    def __getitem__(self, key: str) -> float:
        if key in self._means:
            return self._sums.get(key, 0.0) / self._batches[key] if self._batches.get(key) else float("nan")
        return self._sums[key]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(set(self._sums) | self._means))

    def __len__(self) -> int:
        return len(set(self._sums) | self._means)

    def __repr__(self) -> str:
        return f"EpochStats({dict(self)})"
