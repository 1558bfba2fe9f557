"""Tokenizer-quality metrics (METHOD.md section 7), computed on codes *before* the dedup code.

Keys of :func:`tokenizer_metrics`:
- ``collision_rate``: 1 - distinct SIDs / items.
- ``collided_item_share``: share of items whose L codes are shared with at least one other item.
- ``max_group_size``: size of the largest group of items sharing all L codes.
- ``utilization``: per level, used codes / K (list); ``mean_utilization`` their mean.
- ``normalized_entropy``: per level, entropy of the code distribution / log K (list); ``mean_normalized_entropy``.
- ``sid_entropy_ratio``: entropy of the full-SID distribution / log N (1 = all distinct).
- ``mean_hamming``: mean Hamming distance (0..L) of random item pairs (``num_random_pairs``, seeded).
- ``harmful_near_collision_share`` (needs ``x``): among semantically distant pairs (cos(x_i, x_j) < 0.5),
  the share that share >= L-1 codes. The numerator is exact (pairs found inside code buckets); the
  denominator is exact by chunked cosine products when N <= ``exact_pairs_max_items``, else estimated
  from the random pairs.
- ``recon_error``: passed through when given.
"""

from __future__ import annotations

import math

import torch


def _entropy(counts: torch.Tensor) -> float:
    p = counts[counts > 0].double() / counts.sum()
    return float(-(p * p.log()).sum())


def _near_pairs(codes: torch.Tensor, max_hamming: int = 1) -> torch.Tensor:
    """All pairs (P, 2), i < j, whose codes differ in at most one level, found inside buckets.

    For each left-out level (and none), rows are grouped by the remaining codes; a pair differing in
    exactly level l shows up only in grouping l, full collisions in every grouping (deduplicated).
    """
    if max_hamming != 1:
        raise NotImplementedError("only max_hamming=1 is bucketed")
    n, L = codes.shape
    pairs = []
    for drop in [None, *range(L)]:
        keep = [l for l in range(L) if l != drop]
        _, group = torch.unique(codes[:, keep], dim=0, return_inverse=True)
        order = torch.argsort(group, stable=True)
        g = group[order]
        counts = torch.bincount(g)
        big = torch.nonzero(counts > 1).flatten()
        if len(big) == 0:
            continue
        starts = torch.cumsum(counts, 0) - counts
        for gid in big.tolist():
            members = order[starts[gid] : starts[gid] + counts[gid]]
            i, j = torch.triu_indices(len(members), len(members), offset=1)
            pairs.append(torch.stack([members[i], members[j]], dim=1))
    if not pairs:
        return torch.zeros(0, 2, dtype=torch.long)
    p = torch.cat(pairs)
    p = torch.stack([p.min(dim=1).values, p.max(dim=1).values], dim=1)
    return torch.unique(p, dim=0)


def _distant_pair_count(xn: torch.Tensor, threshold: float, chunk: int = 2048) -> int:
    """Number of unordered pairs i<j with cos < threshold (exact, chunked)."""
    total = 0
    for start in range(0, len(xn), chunk):
        sims = xn[start : start + chunk] @ xn.T
        rows = torch.arange(start, min(start + chunk, len(xn)))
        upper = torch.arange(len(xn))[None, :] > rows[:, None]
        total += int(((sims < threshold) & upper).sum())
    return total


@torch.no_grad()
def tokenizer_metrics(codes: torch.Tensor, codebook_sizes, x: torch.Tensor | None = None, recon_error: float | None = None,
                      num_random_pairs: int = 200_000, seed: int = 0, distant_threshold: float = 0.5,
                      exact_pairs_max_items: int = 50_000) -> dict:
    """All section-7 metrics for codes (N, L) before dedup; ``x`` (N, d) content embeddings (optional)."""
    codes = torch.as_tensor(codes, dtype=torch.long)
    n, L = codes.shape
    if len(codebook_sizes) != L:
        raise ValueError(f"{L} code levels but {len(codebook_sizes)} codebook sizes")
    _, inverse, group_counts = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
    item_group_size = group_counts[inverse]
    out: dict = {
        "num_items": n,
        "collision_rate": 1.0 - len(group_counts) / n,
        "collided_item_share": float((item_group_size > 1).double().mean()),
        "max_group_size": int(group_counts.max()),
        "sid_entropy_ratio": _entropy(group_counts) / math.log(n) if n > 1 else 1.0,
    }
    util, ent = [], []
    for level, k in enumerate(codebook_sizes):
        counts = torch.bincount(codes[:, level], minlength=int(k))
        util.append(int((counts > 0).sum()) / int(k))
        ent.append(_entropy(counts) / math.log(k) if k > 1 else 1.0)
    out |= {"utilization": util, "mean_utilization": sum(util) / L, "normalized_entropy": ent, "mean_normalized_entropy": sum(ent) / L}

    gen = torch.Generator().manual_seed(seed)
    i = torch.randint(n, (num_random_pairs,), generator=gen)
    j = torch.randint(n - 1, (num_random_pairs,), generator=gen)
    j = j + (j >= i).long()  # a different item
    out["mean_hamming"] = float((codes[i] != codes[j]).sum(dim=1).double().mean())

    if x is not None:
        xn = torch.nn.functional.normalize(torch.as_tensor(x).float(), dim=1)
        near = _near_pairs(codes)
        near_cos = (xn[near[:, 0]] * xn[near[:, 1]]).sum(dim=1) if len(near) else torch.zeros(0)
        harmful = int((near_cos < distant_threshold).sum())
        if n <= exact_pairs_max_items:
            distant = _distant_pair_count(xn, distant_threshold)
            out["harmful_near_collision_estimate"] = "exact"
        else:
            share = float(((xn[i] * xn[j]).sum(dim=1) < distant_threshold).double().mean())
            distant = share * n * (n - 1) / 2
            out["harmful_near_collision_estimate"] = f"denominator sampled from {num_random_pairs} pairs"
        out["harmful_near_collision_pairs"] = harmful
        out["distant_pairs"] = distant
        out["harmful_near_collision_share"] = harmful / distant if distant else 0.0
    if recon_error is not None:
        out["recon_error"] = float(recon_error)
    return out
