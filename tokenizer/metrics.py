"""Tokenizer-quality metrics (docs/method.md section 7), computed on the L codes *before* the dedup code.

Keys returned by :func:`tokenizer_metrics` (N items, L levels, K_l codes at level l; a "pair" is an
unordered pair of distinct items; logs are natural):

- ``num_items``: N. ``num_distinct_sids``: number of distinct L-code tuples.
- ``collision_rate``: 1 - distinct SIDs / N.
- ``collided_item_share``: share of items whose L codes are shared with at least one other item.
- ``max_group_size``: size of the largest group of items sharing all L codes (= dedup levels needed).
- ``utilization``: per level, used codes / K_l (list); ``mean_utilization``: their mean.
- ``normalized_entropy``: per level, entropy of the code distribution / log K_l (list; 1 = uniform);
  ``mean_normalized_entropy``: their mean.
- ``sid_entropy_ratio``: entropy of the distribution of full L-code tuples / log N (1 = all distinct).
- ``mean_hamming``: expected Hamming distance (0..L) of a uniformly random pair, computed exactly from
  per-level code counts: sum_l (1 - sum_k n_lk (n_lk - 1) / (N (N - 1))) (what sampling pairs estimates).
- ``colliding_pairs``: pairs sharing all L codes; ``near_collision_pairs``: pairs sharing >= L-1 codes
  (colliding pairs included). Exact, from bucket sizes.
- with ``x`` (content embeddings):
  - ``distant_pairs``: pairs with cos(x_i, x_j) < ``distant_threshold`` (0.5). Exact (chunked cosine
    products over all pairs) when N <= ``exact_pairs_max_items``; above, estimated as
    C(N, 2) x (distant share of ``num_random_pairs`` seeded random pairs); ``distant_pairs_exact``
    says which.
  - ``harmful_near_collision_pairs``: distant pairs sharing >= L-1 codes; exact: pairs are formed only
    inside code buckets (for each left-out level l, items grouped by their other L-1 codes, keeping
    pairs whose level-l codes differ, plus items grouped by all L codes), so each pair is counted once.
    For L = 1 every pair shares >= L-1 = 0 codes, so it equals ``distant_pairs``.
  - ``harmful_near_collision_share``: harmful_near_collision_pairs / distant_pairs (0 when there are
    no distant pairs).
- ``recon_error``: passed through when given (the quantiser's reconstruction error).

Cost: everything but the pair terms is O(N L) (sorting); the harmful pairs cost the sum of squared
bucket sizes; the exact denominator costs N^2 d / 2 multiply-adds (12k x 384-d: about a second).
"""

from __future__ import annotations

import math

import torch

from genrec.tokenizer.pairs import pair_count

PAIR_BLOCK_ELEMENTS = 1 << 22  # bounds every similarity block (and gathered embedding block) to ~16 MB of floats


def _entropy(counts: torch.Tensor) -> float:
    p = counts[counts > 0].double() / counts.sum()
    return float(-(p * p.log()).sum())


def _bucket_keys(codes: torch.Tensor, codebook_sizes: tuple[int, ...], levels: list[int]) -> torch.Tensor:
    """(N,) long key, equal for two rows iff their codes agree at every level in ``levels``."""
    if not levels:
        return torch.zeros(codes.shape[0], dtype=torch.long)
    if math.prod(codebook_sizes[level] for level in levels) < 2**62:
        key = torch.zeros(codes.shape[0], dtype=torch.long)
        for level in levels:  # mixed-radix number with digit codes[:, level]
            key = key * codebook_sizes[level] + codes[:, level]
        return key
    return torch.unique(codes[:, levels], dim=0, return_inverse=True)[1]


def _buckets(key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows sorted by key (``order``), and the start position and size of every key's run in ``order``."""
    order = torch.argsort(key, stable=True)
    _, sizes = torch.unique_consecutive(key[order], return_counts=True)
    starts = torch.cumsum(sizes, 0) - sizes
    return order, starts, sizes


def _distant_pairs_in_group(members: torch.Tensor, xn: torch.Tensor, threshold: float, differ: torch.Tensor | None) -> int:
    """Pairs i<j of ``members`` with cos < threshold (and differ[i] != differ[j] when given), in row blocks."""
    m = len(members)
    v = xn[members]  # gathered once; blocks below are views
    code = differ[members] if differ is not None else None
    block = max(1, PAIR_BLOCK_ELEMENTS // max(m, 1))
    total = 0
    for start in range(0, m, block):
        stop = min(start + block, m)
        sims = v[start:stop] @ v[start:].T  # (b, m - start): row i is members[start + i], column j members[start + j]
        mask = (torch.arange(m - start)[None, :] > torch.arange(stop - start)[:, None]) & (sims < threshold)
        if code is not None:
            mask &= code[start:stop, None] != code[None, start:]
        total += int(mask.sum())
    return total


def _distant_pairs_in_buckets(buckets: tuple[torch.Tensor, torch.Tensor, torch.Tensor], xn: torch.Tensor, threshold: float,
                              differ: torch.Tensor | None = None) -> int:
    """Pairs in the same bucket (``buckets`` from :func:`_buckets`; and with different ``differ``
    values when given) whose cosine similarity is below ``threshold``.

    Buckets of equal size m <= 512 are processed many at a time with one batched (G, m, m) matmul;
    larger buckets go row block by row block. Work ~ sum of squared bucket sizes.
    """
    order, starts, sizes = buckets
    total = 0
    large = sizes > 512
    for start, size in zip(starts[large].tolist(), sizes[large].tolist(), strict=True):
        total += _distant_pairs_in_group(order[start : start + size], xn, threshold, differ)
    small = (sizes >= 2) & ~large
    starts, sizes = starts[small], sizes[small]
    for m in sizes.unique().tolist():
        same_size_starts = starts[sizes == m]
        slot = torch.arange(m)
        upper = slot[None, :] > slot[:, None]  # (m, m): i < j
        per_chunk = max(1, PAIR_BLOCK_ELEMENTS // (m * max(m, xn.shape[1])))
        for c in range(0, len(same_size_starts), per_chunk):
            members = order[same_size_starts[c : c + per_chunk, None] + slot]  # (G, m)
            v = xn[members]  # (G, m, d)
            mask = (v @ v.transpose(1, 2) < threshold) & upper
            if differ is not None:
                code = differ[members]
                mask &= code[:, :, None] != code[:, None, :]
            total += int(mask.sum())
    return total


@torch.no_grad()
def tokenizer_metrics(codes: torch.Tensor, codebook_sizes, x: torch.Tensor | None = None, recon_error: float | None = None,
                      num_random_pairs: int = 200_000, seed: int = 0, distant_threshold: float = 0.5,
                      exact_pairs_max_items: int = 50_000) -> dict:
    """All docs/method.md section-7 metrics (see the module docstring for every key).

    Args:
        codes: (N, L) integer codes before the dedup code, level l in [0, codebook_sizes[l]).
        codebook_sizes: L codebook sizes.
        x: optional (N, d) content embeddings (for the harmful-near-collision share).
        recon_error: optional reconstruction error, passed through.
        num_random_pairs: random pairs sampled (with ``seed``) to estimate ``distant_pairs`` when
            N > ``exact_pairs_max_items``.
        seed: seeds that sample.
        distant_threshold: cosine below which a pair is semantically distant.
        exact_pairs_max_items: largest N for which ``distant_pairs`` is counted exactly.
    """
    codes = torch.as_tensor(codes).cpu()
    if codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] == 0:
        raise ValueError(f"codes must be a non-empty (N, L) tensor, got shape {tuple(codes.shape)}")
    codes = codes.long()
    n, num_levels = codes.shape
    codebook_sizes = tuple(int(k) for k in codebook_sizes)
    if len(codebook_sizes) != num_levels:
        raise ValueError(f"codes have {num_levels} levels but {len(codebook_sizes)} codebook sizes were given")
    out_of_range = (codes < 0) | (codes >= torch.tensor(codebook_sizes))
    if out_of_range.any():
        row, level = (int(v) for v in torch.nonzero(out_of_range)[0])
        raise ValueError(f"code {int(codes[row, level])} of row {row} is out of range for level {level} (size {codebook_sizes[level]})")

    all_levels = list(range(num_levels))
    full_buckets = _buckets(_bucket_keys(codes, codebook_sizes, all_levels))
    group_sizes = full_buckets[2]
    metrics: dict = {
        "num_items": n,
        "num_distinct_sids": len(group_sizes),
        "collision_rate": 1.0 - len(group_sizes) / n,
        "collided_item_share": float(group_sizes[group_sizes > 1].sum()) / n,
        "max_group_size": int(group_sizes.max()),
        "sid_entropy_ratio": _entropy(group_sizes) / math.log(n) if n > 1 else 1.0,
    }

    utilization, entropy, same_code_pairs = [], [], []
    for level, k in enumerate(codebook_sizes):
        counts = torch.bincount(codes[:, level], minlength=k)
        utilization.append(int((counts > 0).sum()) / k)
        entropy.append(_entropy(counts) / math.log(k) if k > 1 else 1.0)
        same_code_pairs.append(pair_count(counts))
    total_pairs = n * (n - 1) // 2
    metrics |= {
        "utilization": utilization, "mean_utilization": sum(utilization) / num_levels,
        "normalized_entropy": entropy, "mean_normalized_entropy": sum(entropy) / num_levels,
        "mean_hamming": sum(1.0 - same / total_pairs for same in same_code_pairs) if total_pairs else 0.0,
    }

    # A pair sharing exactly L-1 codes sits in one "other L-1 codes" bucket; a colliding pair in all L.
    colliding = pair_count(group_sizes)
    leave_one_out_buckets = [_buckets(_bucket_keys(codes, codebook_sizes, [other for other in all_levels if other != level]))
                             for level in all_levels]
    in_leave_one_out_buckets = sum(pair_count(sizes) for _, _, sizes in leave_one_out_buckets)
    metrics["colliding_pairs"] = colliding
    metrics["near_collision_pairs"] = in_leave_one_out_buckets - num_levels * colliding + colliding

    if x is not None:
        x = torch.as_tensor(x).cpu().float()
        if x.ndim != 2 or x.shape[0] != n:
            raise ValueError(f"x must be (N={n}, d) content embeddings, got shape {tuple(x.shape)}")
        bad = ~torch.isfinite(x).all(dim=1)
        if bad.any():
            raise ValueError(f"x: NaN/inf in {int(bad.sum())} row(s): {torch.nonzero(bad).flatten()[:10].tolist()}")
        xn = torch.nn.functional.normalize(x, dim=1)
        if n <= exact_pairs_max_items:
            distant = _distant_pairs_in_group(torch.arange(n), xn, distant_threshold, None)
            metrics["distant_pairs_exact"] = True
        else:
            generator = torch.Generator().manual_seed(seed)
            i = torch.randint(n, (num_random_pairs,), generator=generator)
            j = torch.randint(n - 1, (num_random_pairs,), generator=generator)
            j = j + (j >= i).long()  # uniform over the other n - 1 items
            share = float(((xn[i] * xn[j]).sum(dim=1) < distant_threshold).double().mean())
            distant = share * total_pairs
            metrics["distant_pairs_exact"] = False
        if num_levels == 1:
            harmful = distant
        else:
            harmful = _distant_pairs_in_buckets(full_buckets, xn, distant_threshold)
            for level, buckets in enumerate(leave_one_out_buckets):
                harmful += _distant_pairs_in_buckets(buckets, xn, distant_threshold, differ=codes[:, level])
        metrics["distant_pairs"] = distant
        metrics["harmful_near_collision_pairs"] = harmful
        metrics["harmful_near_collision_share"] = harmful / distant if distant else 0.0
    if recon_error is not None:
        metrics["recon_error"] = float(recon_error)
    return metrics
