"""Per-tokenizer Semantic-ID diagnostics that help explain end-to-end recommendation results.

A tokenizer's collision rate says how many items share codes, not whether the items that share codes
*belong together*. These diagnostics ask that question from three sides:

- **Overlap pairs** (:func:`overlap_pairs`): item pairs that share a code prefix, e.g. the full semantic
  code (a collision, told apart only by the dedup code) or the first two levels (siblings).
- **Pair compatibility** (:func:`pair_compatibility`): are those pairs similar in content (cosine of the
  item embeddings) and consumed by the same users (both in one user's training history)? Each statistic
  comes with the same statistic over as many uniformly random pairs, the chance level.
- **Consecutive prefix sharing** (:func:`consecutive_prefix_sharing`): do items consumed one after the
  other share code prefixes more often than chance? That is what a generative recommender can exploit.
- **Top-1 siblings** (:func:`top1_sibling_share`): given a model's ranked lists, how often is a wrong
  top-1 item a collided sibling of the target (same semantic code, other dedup code) or shares only the
  first levels with it: misses that the SID layout, not the model, makes likely.

:func:`sid_diagnostics` runs whatever its inputs allow and returns one flat JSON-able dict.

Codes are the full SIDs, (N, L) with the dedup code as the last level by default: the semantic levels
are the first ``semantic_levels = L - 1``. Pairs are only ever formed inside code buckets (items sharing a
prefix, grouped by one sort), never over all N^2 pairs; buckets larger than ``max_bucket_size`` are
thinned by a fixed rule and the pairs left out are counted (:class:`OverlapPairs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from genrec.tokenizer.pairs import bucket_load, describe_pairs, pair_count, pairs_within_groups, row_ids
from genrec.tokenizer.regularizers.tables import pair_cosine

MAX_BUCKET_SIZE = 256  # members kept per bucket when forming pairs: at most 32,640 pairs per bucket
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
PAIR_CHUNK = 1 << 20  # pairs (or user lookups) handled per block, so memory stays bounded at any catalogue size


def _as_codes(codes, what: str = "codes") -> torch.Tensor:
    codes = torch.as_tensor(np.asarray(codes) if not isinstance(codes, torch.Tensor) else codes).cpu()
    if codes.ndim != 2 or codes.shape[1] == 0:
        raise ValueError(f"{what} must be an (N, L) integer array, got shape {tuple(codes.shape)}")
    if codes.dtype.is_floating_point or codes.dtype == torch.bool:
        raise ValueError(f"{what} must hold integers, got {codes.dtype}")
    codes = codes.long()
    if codes.numel() and int(codes.min()) < 0:
        raise ValueError(f"{what} contain negative codes (min {int(codes.min())})")
    return codes


def _semantic_levels(codes: torch.Tensor, semantic_levels: int | None) -> int:
    """The number of leading semantic levels: L - 1 (the dedup code last) unless given."""
    num_levels = codes.shape[1]
    levels = num_levels - 1 if semantic_levels is None else int(semantic_levels)
    if not 1 <= levels <= num_levels:
        raise ValueError(f"semantic_levels must be in 1..{num_levels} for codes with {num_levels} levels, got {levels}"
                         + (" (codes without a dedup level: pass semantic_levels=L)" if semantic_levels is None else ""))
    return levels


def _sequence_values(train_sequences: Sequence, num_items: int, what: str = "train_sequences") -> tuple[np.ndarray, np.ndarray]:
    """Ragged sequences -> (concatenated item indices (T,) int64, sequence id of each (T,) int64), range-checked."""
    arrays = [np.asarray(s, dtype=np.int64).reshape(-1) for s in train_sequences]
    if not arrays:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    values = np.concatenate(arrays)
    sequence = np.repeat(np.arange(len(arrays), dtype=np.int64), [len(a) for a in arrays])
    if len(values) and (values.min() < 0 or values.max() >= num_items):
        bad = int(values[(values < 0) | (values >= num_items)][0])
        raise ValueError(f"{what}: item index {bad} is outside the catalogue of {num_items} items")
    return values, sequence


# ---------------------------------------------------------------------------------------------- overlap pairs
@dataclass
class OverlapPairs:
    """Item pairs sharing a code prefix (:func:`overlap_pairs`).

    Attributes:
        pairs: (P, 2) long item indices, ``pairs[:, 0] < pairs[:, 1]``, sorted by bucket then item index.
        prefix_len: the number of leading codes the pairs share.
        exact: True if the pairs share exactly ``prefix_len`` codes (differ at the next level).
        total_pairs: how many such pairs the catalogue holds (counted from bucket sizes, capped or not).
        left_out: ``total_pairs - P``, the pairs not enumerated because their bucket was capped.
        capped_buckets: number of buckets with more than ``max_bucket_size`` members.
        max_bucket_size: the cap used.
    """

    pairs: torch.Tensor
    prefix_len: int
    exact: bool
    total_pairs: int
    left_out: int
    capped_buckets: int
    max_bucket_size: int

    def __len__(self) -> int:
        return int(self.pairs.shape[0])


def overlap_pairs(codes, prefix_len: int, *, exact: bool = False, max_bucket_size: int = MAX_BUCKET_SIZE) -> OverlapPairs:
    """The item pairs whose codes agree on the first ``prefix_len`` levels, formed inside prefix buckets.

    Args:
        codes: (N, L) non-negative integer codes (full SIDs).
        prefix_len: 1..L. With the dedup code last, ``L - 1`` gives the full semantic collisions and 2
            the pairs sharing levels 1-2.
        exact: keep only pairs that differ at level ``prefix_len`` (share exactly ``prefix_len`` codes),
            e.g. siblings sharing levels 1-2 that are not also full collisions.
        max_bucket_size: cap on the members of one bucket that pairs are formed from. A bucket of m > c
            members (c = ``max_bucket_size``) keeps the c members, in item-index order with ranks r = 0..m-1,
            for which ``floor((r + 1) c / m) > floor(r c / m)``: c members spread evenly over the bucket, the
            same ones on every call. The pairs this drops are counted in ``left_out``, not hidden.
    Returns:
        :class:`OverlapPairs`. Cost: one sort plus the number of pairs formed (<= c(c-1)/2 per bucket).
    """
    codes = _as_codes(codes)
    n, num_levels = codes.shape
    if not 1 <= prefix_len <= num_levels:
        raise ValueError(f"prefix_len must be in 1..{num_levels} for codes with {num_levels} levels, got {prefix_len}")
    if max_bucket_size < 2:
        raise ValueError(f"max_bucket_size must be >= 2, got {max_bucket_size}")
    total = pair_count(bucket_load(codes, prefix_len).sizes)
    if exact and prefix_len < num_levels:  # pairs sharing >= prefix_len codes minus those sharing >= prefix_len + 1
        total -= pair_count(bucket_load(codes, prefix_len + 1).sizes)

    group = row_ids(codes[:, :prefix_len])
    order = torch.argsort(group, stable=True)  # stable: members of a bucket stay in item-index order
    _, inverse, sizes = torch.unique_consecutive(group[order], return_inverse=True, return_counts=True)
    start = torch.cumsum(sizes, 0) - sizes
    rank = torch.arange(n) - start[inverse]  # rank of each sorted row inside its bucket
    m = sizes[inverse]
    cap = max_bucket_size
    keep_sorted = (m <= cap) | ((rank + 1) * cap // m > rank * cap // m)
    kept = order[keep_sorted]
    left, right = pairs_within_groups(group[kept])
    left, right = kept[left], kept[right]
    if exact and prefix_len < num_levels:
        differs = codes[left, prefix_len] != codes[right, prefix_len]
        left, right = left[differs], right[differs]
    pairs = torch.stack([torch.minimum(left, right), torch.maximum(left, right)], dim=1)
    return OverlapPairs(pairs, prefix_len, exact, total, total - len(pairs), int((sizes > cap).sum()), cap)


# ---------------------------------------------------------------------------------------------- co-consumption
@dataclass
class CoConsumption:
    """Which users consumed which items in training: item -> users, for "co-consumed" pair look-ups.

    Attributes:
        num_items: N, the catalogue size.
        num_users: U, the number of sequences (users).
        indptr: (N + 1,) long; the users of item i are ``users[indptr[i]:indptr[i + 1]]``, ascending.
        users: (nnz,) long user indices, each (item, user) once.
    """

    num_items: int
    num_users: int
    indptr: torch.Tensor
    users: torch.Tensor

    @classmethod
    def from_sequences(cls, train_sequences: Sequence, num_items: int) -> CoConsumption:
        """From U users' training sequences (each a list / array of item indices; repeats count once)."""
        values, sequence = _sequence_values(train_sequences, num_items)
        num_users = len(train_sequences)
        key = torch.unique(torch.from_numpy(values) * max(num_users, 1) + torch.from_numpy(sequence))  # sorted by (item, user)
        items, users = key // max(num_users, 1), key % max(num_users, 1)
        indptr = torch.zeros(num_items + 1, dtype=torch.long)
        indptr[1:] = torch.cumsum(torch.bincount(items, minlength=num_items), 0)
        return cls(num_items, num_users, indptr, users)

    @property
    def degree(self) -> torch.Tensor:
        """(N,) long number of users who consumed each item."""
        return self.indptr[1:] - self.indptr[:-1]

    @cached_property
    def keys(self) -> torch.Tensor:
        """(nnz,) sorted ``item * U + user`` keys, the search space of :meth:`co_consumed` (built once)."""
        return torch.repeat_interleave(torch.arange(self.num_items), self.degree) * max(self.num_users, 1) + self.users

    def co_consumed(self, pairs: torch.Tensor) -> torch.Tensor:
        """(P, 2) item pairs -> (P,) bool: some user consumed both items of the pair.

        For each pair, the users of its less popular item are looked up among the other item's users
        (binary search in the sorted (item, user) keys); work ~ sum over pairs of the smaller degree.
        """
        pairs = torch.as_tensor(pairs).long().reshape(-1, 2)
        if len(pairs) and (int(pairs.min()) < 0 or int(pairs.max()) >= self.num_items):
            raise ValueError(f"pairs: item indices must be in 0..{self.num_items - 1}")
        degree = self.degree
        a, b = pairs[:, 0], pairs[:, 1]
        swap = degree[a] > degree[b]
        a, b = torch.where(swap, b, a), torch.where(swap, a, b)  # a = the item with fewer users
        keys = self.keys
        counts = degree[a]
        ends = torch.cumsum(counts, 0)
        found = torch.zeros(len(pairs), dtype=torch.bool)
        first = 0
        while first < len(pairs):  # blocks of pairs whose look-ups total about PAIR_CHUNK
            done = int(ends[first - 1]) if first else 0
            last = max(first + 1, int(torch.searchsorted(ends, done + PAIR_CHUNK, right=True)))
            rows = torch.arange(first, min(last, len(pairs)))
            c = counts[rows]
            owner = torch.repeat_interleave(rows, c)
            offset = torch.arange(int(c.sum())) - torch.repeat_interleave(torch.cumsum(c, 0) - c, c)
            user = self.users[self.indptr[a[owner]] + offset]
            query = b[owner] * max(self.num_users, 1) + user
            slot = torch.searchsorted(keys, query).clamp(max=max(len(keys) - 1, 0))
            hit = keys[slot] == query if len(keys) else torch.zeros(len(query), dtype=torch.bool)
            found[owner[hit]] = True
            first = int(rows[-1]) + 1
        return found


# ---------------------------------------------------------------------------------------------- pair compatibility
def random_pairs(num_items: int, num_pairs: int, seed: int = 0) -> torch.Tensor:
    """(num_pairs, 2) long uniformly random pairs of distinct items (the first uniform, the second uniform over the
    other N - 1), from a generator seeded with ``seed``."""
    if num_items < 2:
        raise ValueError(f"random pairs need at least 2 items, got {num_items}")
    generator = torch.Generator().manual_seed(seed)
    i = torch.randint(num_items, (num_pairs,), generator=generator)
    j = torch.randint(num_items - 1, (num_pairs,), generator=generator)
    return torch.stack([i, j + (j >= i).long()], dim=1)


def _normalised(content, num_items: int | None) -> torch.Tensor:
    x = torch.as_tensor(content).cpu().float()
    if x.ndim != 2 or (num_items is not None and x.shape[0] != num_items):
        raise ValueError(f"content must be (N{'=' + str(num_items) if num_items is not None else ''}, d) item embeddings, "
                         f"got shape {tuple(x.shape)}")
    bad = ~torch.isfinite(x).all(dim=1)
    if bad.any():
        raise ValueError(f"content: NaN/inf in {int(bad.sum())} row(s), e.g. {torch.nonzero(bad).flatten()[:5].tolist()}")
    return torch.nn.functional.normalize(x, dim=1)


def pair_cosines(pairs: torch.Tensor, xn: torch.Tensor) -> torch.Tensor:
    """(P, 2) pairs, (N, d) L2-normalised rows -> (P,) float cosine of each pair, in blocks of pairs."""
    block = max(1, PAIR_CHUNK // max(xn.shape[1], 1))
    return torch.cat([pair_cosine(xn, pairs[s:s + block, 0], pairs[s:s + block, 1]) for s in range(0, len(pairs), block)]
                     or [torch.zeros(0)])


def _cosine_stats(cosines: torch.Tensor, prefix: str) -> dict:
    if len(cosines) == 0:
        return {f"{prefix}cosine_mean": None, **{f"{prefix}cosine_p{round(q * 100)}": None for q in QUANTILES}}
    values = cosines.double().numpy()
    return {f"{prefix}cosine_mean": float(values.mean()),
            **{f"{prefix}cosine_p{round(q * 100)}": float(v) for q, v in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True)}}


def pair_compatibility(pairs, content=None, co_consumption: CoConsumption | None = None, *, num_items: int | None = None,
                       seed: int = 0) -> dict:
    """Content similarity and co-consumption of item pairs, next to the same for uniformly random pairs.

    Args:
        pairs: (P, 2) item indices (e.g. :attr:`OverlapPairs.pairs`).
        content: optional (N, d) item content embeddings; cosine similarity of each pair.
        co_consumption: optional :class:`CoConsumption` of the training sequences.
        num_items: N; default from ``content`` or ``co_consumption``.
        seed: seeds the P random pairs (:func:`random_pairs`) of the baseline.
    Returns:
        ``num_pairs``; with content ``cosine_mean`` and ``cosine_p10/p25/p50/p75/p90``; with co-consumption
        ``co_consumed_share`` (share of pairs whose two items are both in at least one user's training
        sequence), ``seen_pair_share`` (share of pairs whose two items each occur in some training sequence) and
        ``co_consumed_share_seen`` (the co-consumed share among those pairs); each also as ``random_<key>`` over
        P random pairs (``num_random_pairs``). Statistics of an empty set are None.
    """
    pairs = torch.as_tensor(pairs).long().reshape(-1, 2)
    if num_items is None:
        if content is not None:
            num_items = int(torch.as_tensor(content).shape[0])
        elif co_consumption is not None:
            num_items = co_consumption.num_items
    if co_consumption is not None and num_items != co_consumption.num_items:
        raise ValueError(f"co_consumption covers {co_consumption.num_items} items, content / num_items {num_items}")
    if num_items is not None and len(pairs) and (int(pairs.min()) < 0 or int(pairs.max()) >= num_items):
        raise ValueError(f"pairs: item indices must be in 0..{num_items - 1}, got {int(pairs.min())}..{int(pairs.max())}")
    baseline = random_pairs(num_items, len(pairs), seed) if num_items is not None and num_items >= 2 else torch.zeros(0, 2, dtype=torch.long)
    out: dict = {"num_pairs": len(pairs), "num_random_pairs": len(baseline)}
    if content is not None:
        xn = _normalised(content, num_items)
        out |= _cosine_stats(pair_cosines(pairs, xn), "") | _cosine_stats(pair_cosines(baseline, xn), "random_")
    if co_consumption is not None:
        # Items nobody consumed in training (cold items, items seen only as valid / test targets) can never be
        # co-consumed; the *_seen shares leave such pairs out, so tokenizers with a cold hold-out compare fairly.
        seen = co_consumption.degree > 0
        for prefix, which in (("", pairs), ("random_", baseline)):
            both_seen = seen[which[:, 0]] & seen[which[:, 1]]
            together = co_consumption.co_consumed(which)
            out[f"{prefix}co_consumed_share"] = float(together.double().mean()) if len(which) else None
            out[f"{prefix}seen_pair_share"] = float(both_seen.double().mean()) if len(which) else None
            out[f"{prefix}co_consumed_share_seen"] = float(together[both_seen].double().mean()) if bool(both_seen.any()) else None
    return out


# ---------------------------------------------------------------------------------------------- consecutive items
def consecutive_prefix_sharing(codes, train_sequences: Sequence, *, semantic_levels: int | None = None) -> dict:
    """How often items consumed one after the other share their first k codes, against chance.

    Pairs are (s_t, s_{t+1}) of every training sequence; pairs of an item with itself (a repeat purchase)
    are left out and counted, as an item trivially shares every code with itself.

    Args:
        codes: (N, L) full SIDs.
        train_sequences: U sequences of item indices, oldest first (``SplitData.train_sequences``).
        semantic_levels: the leading semantic levels (default L - 1: the dedup code last).
    Returns:
        ``consecutive_pairs``, ``consecutive_repeats_excluded``, and for k = 1..semantic_levels:
        ``consecutive_share_prefix{k}`` (share of consecutive pairs sharing the first k codes);
        ``chance_uniform_prefix{k}``: the exact expected share for a uniformly random pair of distinct
        catalogue items, sum_b n_b (n_b - 1) / (N (N - 1)) over the k-prefix buckets b;
        ``chance_popularity_prefix{k}``: the same for two independent draws of distinct items, each item
        drawn with its frequency p_i among the consecutive pairs' items, (sum_b P_b^2 - sum_i p_i^2) /
        (1 - sum_i p_i^2) with P_b the bucket's total frequency: chance for the items actually consumed.
        Shares over an empty set are None.
    """
    codes = _as_codes(codes)
    n = codes.shape[0]
    levels = _semantic_levels(codes, semantic_levels)
    values, sequence = _sequence_values(train_sequences, n)
    values_t = torch.from_numpy(values)
    same_user = torch.from_numpy(sequence[1:] == sequence[:-1]) if len(values) > 1 else torch.zeros(0, dtype=torch.bool)
    first, second = values_t[:-1][same_user], values_t[1:][same_user]
    repeat = first == second
    first, second = first[~repeat], second[~repeat]
    shared = describe_pairs(codes, first, second).shared_prefix if len(first) else torch.zeros(0, dtype=torch.long)
    frequency = torch.bincount(torch.cat([first, second]), minlength=n).double()
    out: dict = {"consecutive_pairs": len(first), "consecutive_repeats_excluded": int(repeat.sum())}
    p = frequency / frequency.sum() if frequency.sum() > 0 else frequency
    p_self = float((p * p).sum())
    for k in range(1, levels + 1):
        out[f"consecutive_share_prefix{k}"] = float((shared >= k).double().mean()) if len(first) else None
        bucket = torch.unique(row_ids(codes[:, :k]), return_inverse=True)[1]
        sizes = torch.bincount(bucket).double()
        out[f"chance_uniform_prefix{k}"] = float((sizes * (sizes - 1)).sum() / (n * (n - 1))) if n > 1 else None
        bucket_p = torch.zeros(len(sizes), dtype=torch.float64).index_add_(0, bucket, p)
        out[f"chance_popularity_prefix{k}"] = (float(((bucket_p * bucket_p).sum() - p_self) / (1 - p_self))
                                               if len(first) and p_self < 1 - 1e-12 else None)
    return out


# ---------------------------------------------------------------------------------------------- top-1 siblings
def top1_sibling_share(ranked_items, targets, codes, *, prefix_len: int | None = 2, semantic_levels: int | None = None) -> dict:
    """How often a user's top-ranked item is a wrong item that sits next to the target in the SID tree.

    Args:
        ranked_items: (U, K) item indices, best first (-1 = padding; a user whose top-1 is -1 has no item).
        targets: (U,) the held-out item of each user.
        codes: (N, L) full SIDs.
        prefix_len: the shorter shared prefix reported (default 2: shares levels 1-2 only); None = not reported.
        semantic_levels: the leading semantic levels (default L - 1: the dedup code last).
    Returns:
        Shares over all U users: ``top1_hit_share`` (top-1 is the target); ``top1_collided_sibling_share``
        (top-1 is not the target but has its full semantic code: only the dedup code tells them apart);
        ``top1_prefix{prefix_len}_only_share`` (top-1 shares exactly the first ``prefix_len`` codes with the
        target); ``top1_empty_share`` (no ranked item); and ``top1_users`` = U. None when U = 0.
    """
    codes = _as_codes(codes)
    n = codes.shape[0]
    levels = _semantic_levels(codes, semantic_levels)
    if prefix_len is not None and not 1 <= prefix_len < levels:
        raise ValueError(f"prefix_len must be in 1..{levels - 1} (shorter than the {levels} semantic levels), got {prefix_len}")
    ranked = torch.as_tensor(np.asarray(ranked_items) if not isinstance(ranked_items, torch.Tensor) else ranked_items).long()
    targets = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor) else targets).long()
    if ranked.ndim != 2 or targets.ndim != 1 or ranked.shape[0] != targets.shape[0] or ranked.shape[1] == 0:
        raise ValueError(f"expected ranked_items (U, K >= 1) and targets (U,), got {tuple(ranked.shape)} and {tuple(targets.shape)}")
    if len(targets) and (int(targets.min()) < 0 or int(targets.max()) >= n):
        raise ValueError(f"targets: item indices must be in 0..{n - 1}, got {int(targets.min())}..{int(targets.max())}")
    if ranked.numel() and (int(ranked.min()) < -1 or int(ranked.max()) >= n):
        raise ValueError(f"ranked_items: item indices must be in 0..{n - 1} or -1 (padding), got {int(ranked.min())}..{int(ranked.max())}")
    users = len(targets)
    keys = ["top1_hit_share", "top1_collided_sibling_share"] + ([f"top1_prefix{prefix_len}_only_share"] if prefix_len else [])
    if users == 0:
        return {"top1_users": 0, **dict.fromkeys(keys), "top1_empty_share": None}
    top1 = ranked[:, 0]
    present = top1 >= 0
    wrong = present & (top1 != targets)
    shared = describe_pairs(codes[:, :levels], top1.clamp(min=0), targets).shared_prefix
    shares = [present & ~wrong, wrong & (shared == levels)] + ([wrong & (shared == prefix_len)] if prefix_len else [])
    return {"top1_users": users, **{key: float(share.double().mean()) for key, share in zip(keys, shares, strict=True)},
            "top1_empty_share": float((~present).double().mean())}


def ranking_top1_diagnostics(ranked_items, targets, codes) -> dict | None:
    """:func:`top1_sibling_share` as every test ranking records it (``test_top1`` in a run's metrics): the
    collided sibling, and the sibling one level up (sharing all semantic codes but the last). None for
    codes with a single level (no dedup level to tell siblings apart)."""
    semantic_levels = _as_codes(codes).shape[1] - 1  # the last level is the dedup code
    if semantic_levels < 1:
        return None
    return top1_sibling_share(ranked_items, targets, codes, prefix_len=semantic_levels - 1 or None)


# ---------------------------------------------------------------------------------------------- entry point
def sid_diagnostics(codes, content=None, train_sequences: Sequence | None = None, *, ranked_items=None, targets=None,
                    semantic_levels: int | None = None, sibling_prefix_len: int = 2, seed: int = 0,
                    max_bucket_size: int = MAX_BUCKET_SIZE) -> dict:
    """Every diagnostic its inputs allow, as one flat JSON-able dict (ints, floats, None).

    Args:
        codes: (N, L) full SIDs (the dedup code last unless ``semantic_levels`` says otherwise).
        content: optional (N, d) item content embeddings (cosines of pairs).
        train_sequences: optional U training sequences of item indices (co-consumption, consecutive pairs).
        ranked_items, targets: optional (U', K) ranked lists and (U',) targets of a model (top-1 siblings).
        semantic_levels: the leading semantic levels (default L - 1).
        sibling_prefix_len: siblings share exactly this many leading codes (default 2: levels 1-2).
        seed: seeds the random baseline pairs.
        max_bucket_size: see :func:`overlap_pairs`.
    Returns:
        ``num_items``, ``num_levels``, ``semantic_levels``, ``sibling_prefix_len``; for ``collided`` (pairs with
        the same full semantic code) and ``sibling`` (pairs sharing exactly ``sibling_prefix_len`` codes):
        ``<set>_pairs`` (enumerated), ``<set>_pairs_total``, ``<set>_pairs_left_out`` and, with content or
        sequences, the :func:`pair_compatibility` keys prefixed ``<set>_``; with sequences the
        :func:`consecutive_prefix_sharing` keys; with rankings the :func:`top1_sibling_share` keys.
    """
    codes = _as_codes(codes)
    n, num_levels = codes.shape
    levels = _semantic_levels(codes, semantic_levels)
    out: dict = {"num_items": n, "num_levels": num_levels, "semantic_levels": levels}
    co = CoConsumption.from_sequences(train_sequences, n) if train_sequences is not None else None
    sets = [("collided", levels, False)]
    if 1 <= sibling_prefix_len < levels:
        out["sibling_prefix_len"] = sibling_prefix_len
        sets.append(("sibling", sibling_prefix_len, True))
    for name, prefix_len, exact in sets:
        found = overlap_pairs(codes, prefix_len, exact=exact, max_bucket_size=max_bucket_size)
        out |= {f"{name}_pairs": len(found), f"{name}_pairs_total": found.total_pairs, f"{name}_pairs_left_out": found.left_out}
        if content is not None or co is not None:
            stats = pair_compatibility(found.pairs, content, co, num_items=n, seed=seed)
            out |= {f"{name}_{key}": value for key, value in stats.items() if key != "num_pairs"}
    if train_sequences is not None:
        out |= consecutive_prefix_sharing(codes, train_sequences, semantic_levels=levels)
    if (ranked_items is None) != (targets is None):
        raise ValueError("give both ranked_items and targets, or neither")
    if ranked_items is not None:  # an impossible sibling_prefix_len raises here rather than dropping the keys
        out |= top1_sibling_share(ranked_items, targets, codes, prefix_len=sibling_prefix_len, semantic_levels=levels)
    return out


__all__ = ["MAX_BUCKET_SIZE", "CoConsumption", "OverlapPairs", "consecutive_prefix_sharing", "overlap_pairs", "pair_compatibility",
           "pair_cosines", "random_pairs", "ranking_top1_diagnostics", "sid_diagnostics", "top1_sibling_share"]
