"""Ranking metrics for next-item prediction with one held-out target per user.

With a single relevant item, Recall@K is the hit rate (1 if the target is in the top K) and
NDCG@K = 1 / log2(rank + 2) for a 0-based rank < K (the ideal DCG is 1).
"""

from __future__ import annotations

import torch


def target_ranks(ranked_items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of each target in its ranked list, or -1 when absent.

    Args:
        ranked_items: (U, K) item indices, best first (-1 marks an empty slot).
        targets: (U,) item index of each user's held-out item.
    Returns:
        (U,) long.
    """
    if ranked_items.ndim != 2 or targets.ndim != 1 or ranked_items.shape[0] != targets.shape[0]:
        raise ValueError(f"expected ranked_items (U, K) and targets (U,), got {tuple(ranked_items.shape)} and {tuple(targets.shape)}")
    hits = ranked_items == targets[:, None]
    first = hits.int().argmax(dim=1)
    return torch.where(hits.any(dim=1), first, torch.full_like(first, -1))


def per_user_metrics(ranked_items: torch.Tensor, targets: torch.Tensor, ks=(5, 10)) -> dict[str, torch.Tensor]:
    """Per-user Recall@K and NDCG@K, each a (U,) float tensor (for paired tests and averaging)."""
    ranks = target_ranks(ranked_items, targets)
    out = {}
    for k in ks:
        if k > ranked_items.shape[1]:
            raise ValueError(f"cannot compute @{k} from ranked lists of length {ranked_items.shape[1]}")
        hit = (ranks >= 0) & (ranks < k)
        out[f"recall@{k}"] = hit.float()
        out[f"ndcg@{k}"] = torch.where(hit, 1.0 / torch.log2(ranks.clamp(min=0).float() + 2.0), torch.zeros(()))
    return out


def ranking_metrics(ranked_items: torch.Tensor, targets: torch.Tensor, ks=(5, 10)) -> dict[str, float]:
    """Mean Recall@K and NDCG@K over all users."""
    return {name: values.mean().item() for name, values in per_user_metrics(ranked_items, targets, ks).items()}
