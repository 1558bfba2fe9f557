"""Semantic-KNN: rank items by the content similarity of a user's history (the standard cold-start reference).

A user is the mean of the L2-normalised content embeddings of the items of their history
(re-normalised); an item's score is the cosine between that vector and the item's embedding. It
needs no interactions at all, so an item encoded today ranks like any other: the reference that a
cold-start method of a generative recommender has to beat on cold items.

``history_decay`` weights the history by recency: the item ``a`` places before the last one weighs
``history_decay ** a`` (1: the plain mean, the standard reference; 0: the last item alone). On Amazon
Beauty, where consecutive purchases are often items of one product line, recency weighting and
leaving the history's own items out of the ranking (``exclude``) make this a far stronger baseline
(BENCHMARKS.md, cold-start retrieval).

The item embeddings are the catalogue's content vectors (e.g. the tokenizer's input text
embeddings: :func:`genrec.data.embed.embed_texts`), row ``i`` = item index ``i``.
"""

from __future__ import annotations

import torch


class SemanticKNN:
    """Content-similarity ranker over a catalogue.

    Args:
        item_embeddings: ``(N, d)`` float content vectors, row = item index (normalised here).
    """

    def __init__(self, item_embeddings: torch.Tensor):
        if item_embeddings.dim() != 2 or len(item_embeddings) == 0:
            raise ValueError(f"item_embeddings must be a non-empty (N, d) matrix, got shape {tuple(item_embeddings.shape)}")
        self.item_vectors = torch.nn.functional.normalize(item_embeddings.float(), dim=1)

    @property
    def num_items(self) -> int:
        return len(self.item_vectors)

    def user_vectors(self, history_items: torch.Tensor, history_decay: float = 1.0) -> torch.Tensor:
        """``(B, d)`` unit user vectors from ``(B, T)`` history item indices (``-1`` = padding; a row needs one item).

        A row's items are in time order (padding anywhere); the last real item has age 0 and weight 1,
        the one before it ``history_decay``, and so on (``history_decay`` in [0, 1]).
        """
        if not 0.0 <= history_decay <= 1.0:
            raise ValueError(f"history_decay must be in [0, 1], got {history_decay!r}")
        valid = history_items >= 0
        if not bool(valid.any(dim=1).all()):
            raise ValueError("every history needs at least one item (a row of history_items is all padding)")
        weights = valid.float()
        if history_decay < 1.0:
            age = valid.long().flip(1).cumsum(1).flip(1) - 1  # real items after this one
            # decay ** age; at decay 0 that is 1 for the last item (0 ** 0 = 1) and 0 for the others
            weights = torch.where(valid, torch.tensor(history_decay) ** age.clamp(min=0).float(), 0.0)
        vectors = self.item_vectors[history_items.clamp(min=0)] * weights[..., None]
        return torch.nn.functional.normalize(vectors.sum(dim=1), dim=1)

    def similarities(self, history_items: torch.Tensor, items: torch.Tensor | None = None, history_decay: float = 1.0) -> torch.Tensor:
        """``(B, N)`` cosines of every catalogue item (or ``(B, len(items))`` of the item indices ``items``)."""
        catalogue = self.item_vectors if items is None else self.item_vectors[items]
        return self.user_vectors(history_items, history_decay) @ catalogue.T

    def rank(self, history_items: torch.Tensor, top_k: int, items: torch.Tensor | None = None, history_decay: float = 1.0,
             exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``top_k`` most similar items per row: ``(B, top_k)`` item indices and cosines, best first.

        ``items``: rank only these item indices (e.g. the cold items); default the whole catalogue.
        ``exclude``: ``(B, E)`` item indices (-1 = padding) a row never returns, e.g. its own history;
        when fewer than ``top_k`` items are left, the row ends in -1 with cosine -inf.
        Ties go to the lower item index (``torch.topk`` on a stable order is not guaranteed, so the
        scores are sorted with a stable sort).
        """
        scores = self.similarities(history_items, items, history_decay)
        candidates = torch.arange(scores.shape[1], device=scores.device) if items is None else items.to(scores.device)
        if exclude is not None and exclude.numel():
            exclude = exclude.to(scores.device).long()
            banned = torch.zeros(len(scores), self.num_items + 1, dtype=torch.bool, device=scores.device)
            banned.scatter_(1, torch.where(exclude >= 0, exclude, self.num_items), True)  # padding -> the spare column
            scores = scores.masked_fill(banned[:, candidates], float("-inf"))
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :top_k]
        best = scores.gather(1, order)
        ranked = candidates[order].masked_fill(best == float("-inf"), -1)
        return ranked, best
