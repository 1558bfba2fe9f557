"""Batched k-means in torch (k-means++ init, Lloyd iterations), deterministic by seed.

Written by hand rather than taken from scikit-learn/faiss: those are not dependencies, and codebook
initialisation needs it on torch tensors (CPU or GPU) with bounded memory (distances are computed in
chunks of ``chunk_size`` points).
"""

from __future__ import annotations

import torch


def _check(x: torch.Tensor, k: int) -> None:
    if x.ndim != 2:
        raise ValueError(f"k-means expects (N, d) points, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        rows = torch.nonzero(~torch.isfinite(x).all(dim=1)).flatten()[:5].tolist()
        raise ValueError(f"k-means input has NaN/inf values (rows {rows})")
    if k > x.shape[0]:
        raise ValueError(f"cannot fit {k} clusters to {x.shape[0]} points: the codebook size must not exceed the number of items")


def nearest(x: torch.Tensor, centroids: torch.Tensor, chunk_size: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    """Index (N,) of each point's nearest centroid and the squared distance (N,)."""
    idx, dist = [], []
    c_sq = (centroids * centroids).sum(dim=1)
    for chunk in x.split(chunk_size):
        d = (chunk * chunk).sum(dim=1, keepdim=True) - 2 * chunk @ centroids.T + c_sq
        best = d.min(dim=1)
        idx.append(best.indices)
        dist.append(best.values.clamp(min=0))
    return torch.cat(idx), torch.cat(dist)


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: (k, d) centroids, each drawn proportionally to squared distance."""
    n = x.shape[0]
    centroids = torch.empty(k, x.shape[1], dtype=x.dtype, device=x.device)
    centroids[0] = x[torch.randint(n, (1,), generator=generator, device="cpu").item()]
    d2 = ((x - centroids[0]) ** 2).sum(dim=1)
    for i in range(1, k):
        probs = d2.cpu().double()
        j = torch.multinomial(probs / probs.sum(), 1, generator=generator).item() if probs.sum() > 0 else torch.randint(n, (1,), generator=generator).item()
        centroids[i] = x[j]
        d2 = torch.minimum(d2, ((x - centroids[i]) ** 2).sum(dim=1))
    return centroids


def kmeans(x: torch.Tensor, k: int, iters: int = 25, seed: int = 0, tol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit k centroids to x (N, d). Returns centroids (k, d) and assignments (N,).

    Empty clusters are re-seeded with the points farthest from their centroid.
    """
    _check(x, k)
    x = x.float()
    gen = torch.Generator().manual_seed(seed)
    centroids = kmeans_plus_plus(x, k, gen)
    prev = None
    for _ in range(iters):
        assign, dist = nearest(x, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp(min=1)[:, None])
        if empty.any():
            far = dist.topk(int(empty.sum())).indices
            centroids[empty] = x[far]
        inertia = dist.sum().item()
        if prev is not None and abs(prev - inertia) <= tol * max(prev, 1e-12):
            break
        prev = inertia
    assign, _ = nearest(x, centroids)
    return centroids, assign
