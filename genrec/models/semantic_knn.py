"""Semantic-KNN: rank items by the content similarity of a user's history (the standard cold-start reference).

A user is the mean of the L2-normalised content embeddings of the items of their history
(re-normalised); an item's score is the cosine between that vector and the item's embedding. It
needs no interactions at all, so an item encoded today ranks like any other: the reference that a
cold-start method of a generative recommender has to beat on cold items.

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

    def user_vectors(self, history_items: torch.Tensor) -> torch.Tensor:
        """``(B, d)`` unit user vectors from ``(B, T)`` history item indices (``-1`` = padding; a row needs one item)."""
        valid = history_items >= 0
        if not bool(valid.any(dim=1).all()):
            raise ValueError("every history needs at least one item (a row of history_items is all padding)")
        vectors = self.item_vectors[history_items.clamp(min=0)] * valid[..., None]
        return torch.nn.functional.normalize(vectors.sum(dim=1), dim=1)

    def similarities(self, history_items: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, N)`` cosines of every catalogue item (or ``(B, len(items))`` of the item indices ``items``)."""
        catalogue = self.item_vectors if items is None else self.item_vectors[items]
        return self.user_vectors(history_items) @ catalogue.T

    def rank(self, history_items: torch.Tensor, top_k: int, items: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``top_k`` most similar items per row: ``(B, top_k)`` item indices and cosines, best first.

        ``items``: rank only these item indices (e.g. the cold items); default the whole catalogue.
        Ties go to the lower item index (``torch.topk`` on a stable order is not guaranteed, so the
        scores are sorted with a stable sort).
        """
        scores = self.similarities(history_items, items)
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :top_k]
        best = scores.gather(1, order)
        ranked = order if items is None else items.to(order.device)[order]
        return ranked, best
