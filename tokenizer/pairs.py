"""Candidate overlapping pairs inside code buckets, and catalogue-wide bucket loads (docs/method.md sections 2, 5).

Two items *overlap* when their codes differ at few levels: Hamming distance ``h`` in ``0..L``
(0 = full collision), severity ``s = (L - h) / L``, shared prefix ``p`` = number of leading levels
that agree. Collision-aware regularisers only look at pairs with ``h <= H`` (default H = 1).

Forming them never enumerates all B^2 pairs: a pair with ``h <= H`` agrees on at least ``L - H``
levels, so for every choice of ``L - H`` kept levels the batch is grouped by the codes at those
levels (one sort) and pairs are formed inside each group; a pair found through several groupings
(e.g. a full collision, found once per left-out level) is kept once. Cost: ``C(L, H)`` sorts plus
the sum of squared group sizes. Collision load is a histogram of the whole catalogue's bucket sizes
(one ``unique`` over N rows), looked up per pair with a binary search.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

_PACK_LIMIT = 2**62  # mixed-radix keys must stay below this to fit int64 without overflow


@dataclass
class CandidatePairs:
    """P overlapping pairs of batch rows, sorted by (left, right).

    Attributes:
        left: (P,) long, batch row of the first item; always ``left < right``.
        right: (P,) long, batch row of the second item.
        hamming: (P,) long, number of levels whose codes differ (0..H).
        severity: (P,) float, ``(L - hamming) / L`` in [0, 1].
        shared_prefix: (P,) long, number of leading levels whose codes agree (0..L).
        num_levels: L.
    """

    left: torch.Tensor
    right: torch.Tensor
    hamming: torch.Tensor
    severity: torch.Tensor
    shared_prefix: torch.Tensor
    num_levels: int

    def __len__(self) -> int:
        return int(self.left.numel())

    def select(self, keep: torch.Tensor) -> CandidatePairs:
        """The pairs where ``keep`` (P,) bool (or an index tensor) selects them."""
        return CandidatePairs(self.left[keep], self.right[keep], self.hamming[keep], self.severity[keep],
                              self.shared_prefix[keep], self.num_levels)


def _check_codes(codes: torch.Tensor, what: str) -> None:
    if codes.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (N, L) tensor of codes, got shape {tuple(codes.shape)}")
    if codes.dtype.is_floating_point or codes.dtype == torch.bool:
        raise ValueError(f"{what} must be an integer tensor, got {codes.dtype}")
    if codes.numel() and int(codes.min()) < 0:
        raise ValueError(f"{what} contain negative codes (min {int(codes.min())})")


def _radices(rows: torch.Tensor) -> list[int]:
    return [int(v) + 1 for v in rows.amax(dim=0).tolist()] if rows.shape[0] else [1] * rows.shape[1]


def _pack(rows: torch.Tensor, radices: list[int]) -> torch.Tensor:
    """(n, k) non-negative codes -> (n,) long mixed-radix numbers (caller checks the product fits)."""
    key = torch.zeros(rows.shape[0], dtype=torch.long, device=rows.device)
    for column, radix in enumerate(radices):
        key = key * radix + rows[:, column].long()
    return key


def row_ids(rows: torch.Tensor) -> torch.Tensor:
    """(n, k) non-negative integer rows -> (n,) long ids, equal exactly when the rows are equal.

    Packs each row into one int64 when the code ranges allow it (one pass), else falls back to
    ``torch.unique(dim=0)`` (a lexicographic sort of the rows).
    """
    if rows.shape[1] == 0:
        return torch.zeros(rows.shape[0], dtype=torch.long, device=rows.device)
    radices = _radices(rows)
    if math.prod(radices) < _PACK_LIMIT:
        return _pack(rows, radices)
    return torch.unique(rows, dim=0, return_inverse=True)[1]


def pair_count(sizes: torch.Tensor) -> int:
    """Unordered pairs inside buckets of the given (B,) sizes: sum of n (n - 1) / 2."""
    sizes = sizes.long()
    return int((sizes * (sizes - 1) // 2).sum())


def pairs_within_groups(group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All unordered pairs of rows sharing a group id.

    Args:
        group: (n,) long group id per row.
    Returns:
        left, right: (P,) long row indices with ``left < right``; P = sum over groups of size*(size-1)/2.
    """
    n = group.numel()
    device = group.device
    if n < 2:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty
    order = torch.argsort(group, stable=True)
    _, sizes = torch.unique_consecutive(group[order], return_counts=True)
    group_end = torch.repeat_interleave(torch.cumsum(sizes, 0), sizes)  # (n,) end (exclusive) of each sorted row's group
    position = torch.arange(n, device=device)
    partners = group_end - position - 1  # rows after this one in its group
    total = int(partners.sum())
    first_pair = torch.cumsum(partners, 0) - partners
    left_pos = torch.repeat_interleave(position, partners)
    offset = torch.arange(total, device=device) - torch.repeat_interleave(first_pair, partners)
    # The sort is stable, so rows of a group keep their original order: left < right.
    return order[left_pos], order[left_pos + 1 + offset]


def describe_pairs(codes: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> CandidatePairs:
    """Hamming distance, severity and shared prefix of given pairs of rows of ``codes`` (n, L)."""
    num_levels = codes.shape[1]
    equal = codes[left] == codes[right]  # (P, L)
    hamming = num_levels - equal.sum(dim=1)
    shared_prefix = torch.cumprod(equal.long(), dim=1).sum(dim=1)
    severity = (num_levels - hamming).float() / max(num_levels, 1)
    return CandidatePairs(left, right, hamming, severity, shared_prefix, num_levels)


def candidate_pairs(codes: torch.Tensor, max_hamming: int = 1) -> CandidatePairs:
    """Pairs of batch rows whose codes differ at no more than ``max_hamming`` levels.

    Args:
        codes: (B, L) non-negative integer codes of the batch (hard assignments, no gradient).
        max_hamming: H >= 0; H >= L returns every pair of the batch.
    Returns:
        :class:`CandidatePairs` sorted by (left, right), each pair once.
    """
    _check_codes(codes, "codes")
    if max_hamming < 0:
        raise ValueError(f"max_hamming must be >= 0, got {max_hamming}")
    batch_size, num_levels = codes.shape
    kept = num_levels - min(max_hamming, num_levels)
    lefts, rights = [], []
    for levels in itertools.combinations(range(num_levels), kept):
        left, right = pairs_within_groups(row_ids(codes[:, list(levels)]))
        lefts.append(left)
        rights.append(right)
    left, right = torch.cat(lefts), torch.cat(rights)
    # Dedupe (a pair agreeing on more than L - H levels is found by several groupings) and sort.
    key = torch.unique(left * max(batch_size, 1) + right)
    left, right = key // max(batch_size, 1), key % max(batch_size, 1)
    return describe_pairs(codes, left, right)


def all_pairs(codes: torch.Tensor, max_hamming: int = 1) -> CandidatePairs:
    """Reference: the same pairs as :func:`candidate_pairs` by checking all B(B-1)/2 pairs (O(B^2) memory)."""
    _check_codes(codes, "codes")
    left, right = torch.triu_indices(codes.shape[0], codes.shape[0], offset=1, device=codes.device)
    pairs = describe_pairs(codes, left, right)
    return pairs.select(pairs.hamming <= max_hamming)


@dataclass
class BucketLoad:
    """Catalogue histogram of the buckets defined by the codes at ``levels``.

    Attributes:
        levels: the levels whose codes define a bucket (``(0..p-1)`` for prefix buckets of length p).
        keys: (U,) sorted bucket keys (packed codes) or, when codes cannot be packed, (U, k) unique rows.
        sizes: (U,) long, number of catalogue items in each bucket (the histogram).
        radices: per-level radix used to pack keys (catalogue max code + 1); None when not packed.
    """

    levels: tuple[int, ...]
    keys: torch.Tensor
    sizes: torch.Tensor
    radices: list[int] | None

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """(P, L) codes -> (P,) long catalogue size of each row's bucket; 0 for a bucket the catalogue lacks."""
        rows = codes[:, list(self.levels)]
        if self.sizes.numel() == 0:  # empty catalogue
            return torch.zeros(rows.shape[0], dtype=torch.long, device=rows.device)
        if self.radices is None:  # unpacked keys: match rows against the unique catalogue rows
            ids, inverse = torch.unique(torch.cat([self.keys, rows]), dim=0, return_inverse=True)
            sizes = torch.zeros(ids.shape[0], dtype=torch.long, device=rows.device)
            sizes[inverse[: self.keys.shape[0]]] = self.sizes
            return sizes[inverse[self.keys.shape[0]:]]
        in_range = torch.ones(rows.shape[0], dtype=torch.bool, device=rows.device)
        for column, radix in enumerate(self.radices):
            in_range &= rows[:, column] < radix
        key = _pack(torch.where(in_range[:, None], rows, torch.zeros_like(rows)), self.radices)
        slot = torch.searchsorted(self.keys, key).clamp(max=self.keys.numel() - 1)
        found = in_range & (self.keys[slot] == key)
        return torch.where(found, self.sizes[slot], torch.zeros_like(key))


def bucket_load(catalogue_codes: torch.Tensor, prefix_len: int | None = None, *, levels: tuple[int, ...] | None = None) -> BucketLoad:
    """Histogram of bucket sizes over the whole catalogue, O(N) memory (one ``unique``).

    Args:
        catalogue_codes: (N, L) codes of every catalogue item.
        prefix_len: buckets are items sharing their first ``prefix_len`` codes (L = full-code buckets).
        levels: alternatively, the exact levels that define a bucket (e.g. every level but one).
    """
    _check_codes(catalogue_codes, "catalogue_codes")
    num_levels = catalogue_codes.shape[1]
    if (prefix_len is None) == (levels is None):
        raise ValueError("give exactly one of prefix_len or levels")
    if levels is None:
        if not 0 <= prefix_len <= num_levels:
            raise ValueError(f"prefix_len must be in 0..{num_levels}, got {prefix_len}")
        levels = tuple(range(prefix_len))
    levels = tuple(int(level) for level in levels)
    if any(not 0 <= level < num_levels for level in levels):
        raise ValueError(f"levels {levels} out of range 0..{num_levels - 1}")
    rows = catalogue_codes[:, list(levels)]
    radices = _radices(rows)
    if math.prod(radices) < _PACK_LIMIT:
        keys, sizes = torch.unique(_pack(rows, radices), return_counts=True)
        return BucketLoad(levels, keys, sizes, radices)
    keys, sizes = torch.unique(rows, dim=0, return_counts=True)
    return BucketLoad(levels, keys, sizes, None)


class CatalogueLoad:
    """Collision load of batch pairs, counted over the whole catalogue's codes.

    The bucket a pair "collides in" is, by default (``prefix_len=None``), the set of catalogue items
    that agree with the pair on every level where the pair's two codes agree: the full-code bucket
    for a full collision, the "all levels but l" bucket for a pair differing only at level l (for
    l = L this is the length-(L-1) prefix bucket). With ``prefix_len=p`` the bucket is the items
    sharing the first p codes; a pair whose shared prefix is shorter than p straddles two such
    buckets and gets the larger of its two items' loads (pressure follows the more congested side).
    Histograms are built lazily, once per distinct agreement pattern, and reused until the catalogue
    codes change.
    """

    def __init__(self, catalogue_codes: torch.Tensor, prefix_len: int | None = None):
        _check_codes(catalogue_codes, "catalogue_codes")
        num_levels = catalogue_codes.shape[1]
        if prefix_len is not None and not 0 <= prefix_len <= num_levels:
            raise ValueError(f"prefix_len must be in 0..{num_levels}, got {prefix_len}")
        self.catalogue_codes = catalogue_codes
        self.prefix_len = prefix_len
        self._loads: dict[tuple[int, ...], BucketLoad] = {}

    def _load(self, levels: tuple[int, ...]) -> BucketLoad:
        if levels not in self._loads:
            self._loads[levels] = bucket_load(self.catalogue_codes, levels=levels)
        return self._loads[levels]

    def pair_load(self, codes: torch.Tensor, pairs: CandidatePairs) -> torch.Tensor:
        """(P,) long catalogue size of the bucket each pair of batch rows (codes (B, L)) collides in."""
        if codes.shape[1] != self.catalogue_codes.shape[1]:
            raise ValueError(f"batch codes have {codes.shape[1]} levels, the catalogue codes {self.catalogue_codes.shape[1]}")
        left, right = codes[pairs.left], codes[pairs.right]
        if self.prefix_len is not None:
            load = self._load(tuple(range(self.prefix_len)))
            return torch.maximum(load.lookup(left), load.lookup(right))
        equal = left == right  # (P, L) agreement pattern of each pair
        pattern = _pack(equal.long(), [2] * equal.shape[1]) if equal.shape[1] else torch.zeros(len(pairs), dtype=torch.long)
        result = torch.zeros(len(pairs), dtype=torch.long, device=codes.device)
        for value in torch.unique(pattern).tolist():
            chosen = pattern == value
            levels = tuple(level for level in range(equal.shape[1]) if (value >> (equal.shape[1] - 1 - level)) & 1)
            result[chosen] = self._load(levels).lookup(left[chosen])
        return result
