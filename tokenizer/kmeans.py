"""Batched k-means in torch: k-means++ seeding, Lloyd iterations, deterministic by seed.

Written by hand rather than taken from scikit-learn/faiss: those are not dependencies, and codebook
initialisation needs it on torch tensors (CPU or GPU). Memory stays bounded for large N: point-to-
centroid distances are computed ``chunk_size`` points at a time, never as one (N, k) matrix.
"""

from __future__ import annotations

import torch


def check_points(x: torch.Tensor, what: str = "points") -> None:
    """Raise a ValueError unless x is a finite (N, d) float tensor; names the offending rows."""
    if x.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (N, d) tensor, got shape {tuple(x.shape)}")
    # A row with a NaN or inf has a non-finite sum, so only rows whose sum is not finite (those, or
    # finite rows whose sum overflows) need the element-wise check. torch.isfinite on the whole
    # matrix materialises temporaries of its size (1M x 384 float32: +2.5 GB), more than encoding needs.
    bad = ~torch.isfinite(x.sum(dim=1))
    if bad.any():
        bad[bad.clone()] = ~torch.isfinite(x[bad]).all(dim=1)
    if bad.any():
        rows = torch.nonzero(bad).flatten()
        raise ValueError(f"{what}: NaN/inf in {len(rows)} row(s): {rows[:10].tolist()}" + (" ..." if len(rows) > 10 else ""))


def nearest(x: torch.Tensor, centroids: torch.Tensor, chunk_size: int = 16384) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of every point.

    Args:
        x: (N, d) points.
        centroids: (k, d).
        chunk_size: points per distance block, so peak memory is chunk_size x k floats.
    Returns:
        index (N,) long of the nearest centroid, squared Euclidean distance (N,) to it.
    """
    c_sq = (centroids * centroids).sum(dim=1)
    indices, distances = [], []
    for chunk in x.split(chunk_size):
        d2 = (chunk * chunk).sum(dim=1, keepdim=True) - 2 * chunk @ centroids.T + c_sq
        best = d2.min(dim=1)
        indices.append(best.indices)
        distances.append(best.values.clamp(min=0))
    if not indices:
        return torch.zeros(0, dtype=torch.long, device=x.device), torch.zeros(0, device=x.device)
    return torch.cat(indices), torch.cat(distances)


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): (k, d) centroids drawn from x.

    The first centroid is uniform; each next one is drawn with probability proportional to the
    squared distance to the nearest centroid chosen so far. Sampling inverts the cumulative sum
    (no 2^24-category limit of ``torch.multinomial``). ``generator`` is a CPU generator.
    """
    n = x.shape[0]
    x_sq = (x * x).sum(dim=1)
    centroids = torch.empty(k, x.shape[1], dtype=x.dtype, device=x.device)
    first = int(torch.randint(n, (1,), generator=generator))
    centroids[0] = x[first]
    d2 = (x_sq - 2 * x @ x[first] + x_sq[first]).clamp(min=0)
    for i in range(1, k):
        weights = d2.double().cpu().cumsum(0)
        total = float(weights[-1])
        if total > 0:
            u = torch.rand(1, generator=generator, dtype=torch.float64) * total
            j = min(int(torch.searchsorted(weights, u, right=True)), n - 1)
        else:  # every point coincides with a centroid already (duplicates): any point will do
            j = int(torch.randint(n, (1,), generator=generator))
        centroids[i] = x[j]
        d2 = torch.minimum(d2, (x_sq - 2 * x @ x[j] + x_sq[j]).clamp(min=0))
    return centroids


@torch.no_grad()
def kmeans(x: torch.Tensor, k: int, iters: int = 25, seed: int = 0, tol: float = 1e-6, chunk_size: int = 16384,
           init: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit k centroids to x (N, d) by k-means++ seeding and Lloyd iterations.

    Args:
        x: (N, d) finite points (any float dtype; computed in float32 on x's device).
        k: number of clusters, 1 <= k <= N.
        iters: maximum Lloyd iterations; stops early when the inertia improves by less than
            ``tol`` (relative).
        seed: fixes the seeding; the result is deterministic given (x, k, iters, seed).
        chunk_size: points per distance block (bounded memory).
        init: optional (k, d) starting centroids instead of k-means++ (warm start).
    Returns:
        centroids (k, d) float32 and assignments (N,) long of every point to its nearest centroid.

    A cluster that becomes empty is re-seeded with the point currently farthest from its own
    centroid (the largest contributors to the inertia, one distinct point per empty cluster).
    """
    check_points(x, "k-means input")
    n = x.shape[0]
    if k < 1:
        raise ValueError(f"k-means needs k >= 1, got {k}")
    if k > n:
        raise ValueError(f"cannot fit {k} clusters to {n} points: the codebook size must not exceed the number of items")
    x = x.float()
    generator = torch.Generator().manual_seed(int(seed))
    if init is None:
        centroids = kmeans_plus_plus(x, k, generator)
    elif tuple(init.shape) != (k, x.shape[1]):
        raise ValueError(f"k-means init must have shape ({k}, {x.shape[1]}), got {tuple(init.shape)}")
    else:
        centroids = init.to(x.device, torch.float32).clone()
    previous_inertia = None
    for _ in range(iters):
        assign, dist = nearest(x, centroids, chunk_size)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp(min=1)[:, None].to(x.dtype))
        if empty.any():
            farthest = dist.topk(int(empty.sum())).indices
            centroids[empty] = x[farthest]
        inertia = float(dist.sum())
        if previous_inertia is not None and previous_inertia - inertia <= tol * max(previous_inertia, 1e-12) and not empty.any():
            break
        previous_inertia = inertia
    assign, _ = nearest(x, centroids, chunk_size)
    return centroids, assign
