"""Cold-start retrieval: putting items that no user has interacted with into the top-K lists.

A cold item (held out of training, or encoded after it) has a Semantic ID from its content, so it
is in the catalogue's trie, but the trained model gives its unseen code combination, and above all
its dedup code, almost no probability: plain beam search practically never returns it. Two ways
to add cold items to a plain search's list, both capped by TIGER's epsilon:

* ``"prefix"`` (TIGER): cold items are matched on their semantic codes only, ignoring the dedup
  code. A beam search over the cold items' semantic prefixes (a trie of the first ``D - 1`` levels
  of the cold items only) finds each user's best cold prefixes; every cold item under a found prefix
  scores that prefix's log-probability.
* ``"content"`` (draft by content, verify by the model; SpecGR-like, with LIGER's dense-score
  fusion as an option): the ``drafts`` cold items most similar in content to the user's history
  (:class:`~genrec.models.semantic_knn.SemanticKNN`) are scored by the model on their semantic
  prefix (teacher forcing), plus ``content_weight`` x the cosine.

A third method is a hybrid ranker rather than a way to add cold items to the model's list:

* ``"fusion"`` (LIGER-like): the plain search's list and a content ranking of the whole catalogue
  (warm and cold items, recency-weighted history, the history's own items left out) are merged by
  reciprocal-rank fusion (:func:`fuse_rankings`); cold items enter through the content ranking.
  On Amazon Beauty a recency-weighted content ranking alone beats the small T5 on warm users, so
  this changes warm lists a lot (BENCHMARKS.md, tenth session: a recency-weighted content ranking).

Merging (:func:`add_cold_items`): the plain list and the best cold candidates are ordered by score
(ties: the plain list's item first, then the lower item index) and cut to K, with at most
``floor(epsilon * K)`` cold items in the list, counting cold items the plain search found itself
(those are never removed, so a list keeps ``max(floor(epsilon * K), plain's cold items)`` at most).
``epsilon = 0`` or ``method = "off"`` returns the plain search's result unchanged.
"""

from __future__ import annotations

import torch

from genrec.decoding.beam_search import ExcludeItems, score_candidates
from genrec.decoding.decode import ColdStartSettings, GenerationSettings, SearchResult, left_align, search
from genrec.decoding.trie import PrefixTrie
from genrec.models.semantic_knn import SemanticKNN

NEG_INF = float("-inf")
# Reciprocal-rank fusion's constant k (an item at rank r, from 0, scores weight / (k + 1 + r)): with lists of
# 10-20 items, Cormack et al.'s k = 60 makes the head of a list barely outweigh its tail.
RANK_CONSTANT = 10


class ColdCatalogue:
    """A catalogue's cold items, prepared for :func:`search_with_cold_items`.

    Args:
        item_tokens: ``(N, D)`` SID token ids of every item (row = item index).
        cold_items: ``(N,)`` bool, the items no user interacted with in training.
        level_ranges: ``D`` pairs ``(first token id, codebook size)`` (``TokenSpace.level_ranges``).
        item_embeddings: ``(N, d)`` content vectors (needed by the ``"content"`` method only).
    """

    def __init__(self, item_tokens: torch.Tensor, cold_items: torch.Tensor, level_ranges, item_embeddings: torch.Tensor | None = None):
        item_tokens = torch.as_tensor(item_tokens).long()
        cold_items = torch.as_tensor(cold_items, dtype=torch.bool)
        if cold_items.shape != (len(item_tokens),):
            raise ValueError(f"cold_items must be ({len(item_tokens)},) bool, got shape {tuple(cold_items.shape)}")
        if item_embeddings is not None and len(item_embeddings) != len(item_tokens):
            raise ValueError(f"item_embeddings has {len(item_embeddings)} rows, the catalogue {len(item_tokens)} items")
        depth = item_tokens.shape[1]
        if depth < 2:
            raise ValueError("cold-start matching needs SIDs of at least 2 levels (semantic codes + a last level)")
        self.is_cold = cold_items
        self.cold = torch.nonzero(cold_items).squeeze(1)  # (C,) item indices
        self.prefix_tokens = item_tokens[:, : depth - 1]  # (N, D - 1): every item's semantic codes
        self.knn = SemanticKNN(item_embeddings) if item_embeddings is not None else None
        self.prefix_trie = self.items_by_prefix = None
        if len(self.cold):
            prefixes, inverse = torch.unique(self.prefix_tokens[self.cold], dim=0, return_inverse=True)
            self.prefix_trie = PrefixTrie.from_item_tokens(prefixes, level_ranges=list(level_ranges)[: depth - 1])
            # items_by_prefix[p]: the cold items under prefix p (ascending item index), padded with -1.
            counts = torch.bincount(inverse, minlength=len(prefixes))
            order = torch.argsort(inverse * len(item_tokens) + self.cold)
            slot = torch.arange(len(order)) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
            self.items_by_prefix = torch.full((len(prefixes), int(counts.max())), -1, dtype=torch.long)
            self.items_by_prefix[inverse[order], slot] = self.cold[order]

    @property
    def num_cold(self) -> int:
        return len(self.cold)

    def to(self, device) -> ColdCatalogue:
        for name in ("is_cold", "cold", "prefix_tokens", "items_by_prefix"):
            if getattr(self, name) is not None:
                setattr(self, name, getattr(self, name).to(device))
        if self.prefix_trie is not None:
            self.prefix_trie = self.prefix_trie.to(device)
        if self.knn is not None:
            self.knn.item_vectors = self.knn.item_vectors.to(device)
        return self


def prefix_candidates(model, input_ids, attention_mask, catalogue: ColdCatalogue, settings: ColdStartSettings,
                      normalization: str = "vocab") -> tuple[torch.Tensor, torch.Tensor]:
    """TIGER's matching: ``(B, M)`` cold items under each row's best cold semantic prefixes, and the prefixes' scores."""
    beams = min(settings.num_beams, catalogue.prefix_trie.num_items)
    found = search(model, input_ids, attention_mask, catalogue.prefix_trie, top_k=beams,
                   settings=GenerationSettings(num_beams=beams, normalization=normalization))
    prefixes, scores = found.items, found.scores  # (B, P): prefix indices of the cold-prefix trie
    group = catalogue.items_by_prefix.shape[1]
    items = catalogue.items_by_prefix[prefixes.clamp(min=0)]  # (B, P, G)
    items = items.masked_fill((prefixes < 0)[..., None], -1).flatten(1)
    scores = scores[..., None].expand(-1, -1, group).flatten(1).masked_fill(items < 0, NEG_INF)
    return items, scores


def content_candidates(model, input_ids, attention_mask, history_items: torch.Tensor, catalogue: ColdCatalogue,
                       settings: ColdStartSettings, normalization: str = "vocab", vocab=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Content drafts verified by the model: ``(B, drafts)`` cold items and their fused scores."""
    if catalogue.knn is None:
        raise ValueError("cold_start.method='content' needs the items' content embeddings (ColdCatalogue(item_embeddings=...))")
    history_items = history_items.to(catalogue.cold.device)
    items, cosines = catalogue.knn.rank(history_items, min(settings.drafts, catalogue.num_cold), items=catalogue.cold,
                                        history_decay=settings.history_decay, exclude=history_items)
    cosines = cosines.masked_fill(items < 0, 0.0)  # a row with fewer drafts than asked ends in -1 (add_cold_items drops it)
    if not model.config.is_encoder_decoder:  # score_candidates reads decoder-only prompts left-padded
        input_ids, attention_mask = left_align(input_ids, attention_mask)
    scores = score_candidates(model, input_ids, attention_mask, catalogue.prefix_tokens[items.clamp(min=0)], vocab=vocab,
                              normalization=normalization)
    return items, scores + settings.content_weight * cosines.to(scores.device)


def add_cold_items(found: SearchResult, candidates: torch.Tensor, candidate_scores: torch.Tensor, is_cold: torch.Tensor,
                   top_k: int, max_cold: int, placement: str = "score") -> SearchResult:
    """Merge cold ``candidates`` (``(B, M)`` item indices, -1 = none, with scores) into ``found``'s lists.

    The ``top_k`` best of ``found``'s items and the candidates, by score, make a row's list; ties:
    ``found``'s item first, then the lower item index. A row's list holds at most ``max_cold`` cold
    items (``is_cold``: ``(N,)`` bool), counting those ``found`` already has (never removed).
    ``placement="score"`` orders the list by score; ``"tail"`` keeps ``found``'s items first, in their
    order, and puts the admitted candidates after them (by score).
    """
    items, scores = found.items[:, :top_k], found.scores[:, :top_k]
    device = items.device
    candidates, candidate_scores = candidates.to(device), candidate_scores.to(device).float()
    is_cold = is_cold.to(device)
    already = (candidates[:, :, None] == items[:, None, :]).any(dim=2)
    usable = (candidates >= 0) & ~already & (candidate_scores > NEG_INF)
    candidates = candidates.masked_fill(~usable, torch.iinfo(torch.long).max)
    candidate_scores = candidate_scores.masked_fill(~usable, NEG_INF)
    # Sort by score, then (stably) by item: each item's best score comes first among its repeats.
    by_score = torch.sort(candidate_scores, dim=1, descending=True, stable=True).indices
    candidates, candidate_scores = candidates.gather(1, by_score), candidate_scores.gather(1, by_score)
    by_item = torch.sort(candidates, dim=1, stable=True).indices
    candidates, candidate_scores = candidates.gather(1, by_item), candidate_scores.gather(1, by_item)
    repeat = torch.zeros_like(usable)
    repeat[:, 1:] = candidates[:, 1:] == candidates[:, :-1]
    candidate_scores = candidate_scores.masked_fill(repeat, NEG_INF)
    # Best first, ties by the lower item index (the order is by item now, and this sort is stable).
    by_score = torch.sort(candidate_scores, dim=1, descending=True, stable=True).indices
    candidates, candidate_scores = candidates.gather(1, by_score), candidate_scores.gather(1, by_score)
    plain_cold = (is_cold[items.clamp(min=0)] & (items >= 0)).sum(dim=1)
    room = (max_cold - plain_cold).clamp(min=0)  # (B,) cold items a row may still take
    width = min(max_cold, candidates.shape[1])
    candidates, candidate_scores = candidates[:, :width], candidate_scores[:, :width]
    allowed = torch.arange(width, device=device)[None, :] < room[:, None]
    candidate_scores = candidate_scores.masked_fill(~allowed, NEG_INF)
    merged_items = torch.cat([items, candidates], dim=1)
    merged_scores = torch.cat([scores.float(), candidate_scores], dim=1)
    order = torch.sort(merged_scores, dim=1, descending=True, stable=True).indices[:, :top_k]
    if placement == "tail":  # the same members; found's items first (their order), then the admitted candidates
        key = (order >= items.shape[1]).long() + 2 * (merged_scores.gather(1, order) == NEG_INF).long()  # empty places last
        order = order.gather(1, torch.sort(key, dim=1, stable=True).indices)
    elif placement != "score":
        raise ValueError(f"placement must be 'score' or 'tail', got {placement!r}")
    merged_items, merged_scores = merged_items.gather(1, order), merged_scores.gather(1, order)
    merged_items = merged_items.masked_fill(merged_scores == NEG_INF, -1)
    return SearchResult(merged_items, merged_scores.to(found.scores.dtype))


def content_ranking(history_items: torch.Tensor, catalogue: ColdCatalogue, settings: ColdStartSettings,
                    exclude_items: ExcludeItems = None) -> torch.Tensor:
    """``(B, drafts)`` catalogue items (warm and cold) nearest in content to each history, best first.

    The history's own items and ``exclude_items`` are left out; -1 where fewer items are left.
    """
    if catalogue.knn is None:
        raise ValueError("cold_start.method='fusion' needs the items' content embeddings (ColdCatalogue(item_embeddings=...))")
    device = catalogue.knn.item_vectors.device
    history_items = history_items.to(device)
    exclude = history_items
    if exclude_items is not None:
        rows = exclude_items.tolist() if isinstance(exclude_items, torch.Tensor) else exclude_items
        width = max((len(r) for r in rows), default=0)
        extra = torch.full((len(history_items), width), -1, dtype=torch.long)
        for row, excluded in enumerate(rows):
            extra[row, : len(excluded)] = torch.as_tensor(list(excluded), dtype=torch.long)
        exclude = torch.cat([history_items, extra.to(device)], dim=1)
    items, _ = catalogue.knn.rank(history_items, min(settings.drafts, catalogue.knn.num_items),
                                  history_decay=settings.history_decay, exclude=exclude)
    return items


def fuse_rankings(found: SearchResult, content_items: torch.Tensor, is_cold: torch.Tensor, top_k: int, max_cold: int,
                  fusion_weight: float = 1.0, cold_boost: float = 1.0) -> SearchResult:
    """Reciprocal-rank fusion of ``found``'s lists and ``content_items`` (``(B, M)``, best first, -1 = none).

    An item at rank r (from 0) of ``found`` scores ``1 / (RANK_CONSTANT + 1 + r)``, of the content
    ranking ``fusion_weight / (RANK_CONSTANT + 1 + r)`` (times ``cold_boost`` for a cold item); an item
    in both lists gets the sum. The ``top_k`` best make a row's list (ties: ``found``'s order, then the
    content ranking's), with at most ``max_cold`` cold items, counting those ``found`` has (never
    removed). The result's scores are the fused values (-inf where a row has fewer items).
    """
    plain = found.items[:, :top_k]
    device = plain.device
    content_items, is_cold = content_items.to(device), is_cold.to(device)
    batch, width, depth = len(plain), plain.shape[1], content_items.shape[1]
    items = torch.cat([plain, content_items], dim=1)  # (B, K + M)
    ranks = torch.cat([torch.arange(width, device=device), torch.arange(depth, device=device)]).float()
    from_content = torch.arange(width + depth, device=device) >= width  # (K + M,)
    cold = is_cold[items.clamp(min=0)] & (items >= 0)
    weights = torch.where(from_content, float(fusion_weight), 1.0) * torch.where(cold & from_content, float(cold_boost), 1.0)
    contributions = (weights / (RANK_CONSTANT + 1 + ranks)).masked_fill(items < 0, 0.0)
    same = items[:, :, None] == items[:, None, :]  # (B, K + M, K + M)
    fused = (same * contributions[:, None, :]).sum(dim=2)
    repeat = torch.tril(same, diagonal=-1).any(dim=2)  # an item's later occurrence
    fused = fused.masked_fill(repeat | (items < 0), NEG_INF)
    # The cap: cold items of the content ranking alone take the room found's own cold items leave.
    plain_cold = cold[:, :width].sum(dim=1)
    room = (max_cold - plain_cold).clamp(min=0)
    added_cold = cold & from_content & (fused > NEG_INF)
    order = torch.sort(fused.masked_fill(~added_cold, NEG_INF), dim=1, descending=True, stable=True).indices
    place = torch.empty_like(order).scatter_(1, order, torch.arange(width + depth, device=device).expand(batch, -1).contiguous())
    fused = fused.masked_fill(added_cold & (place >= room[:, None]), NEG_INF)
    best = torch.sort(fused, dim=1, descending=True, stable=True).indices[:, :top_k]
    out_items, out_scores = items.gather(1, best), fused.gather(1, best)
    return SearchResult(out_items.masked_fill(out_scores == NEG_INF, -1), out_scores.to(found.scores.dtype))


def add_cold_start_items(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, found: SearchResult,
                         catalogue: ColdCatalogue, settings: GenerationSettings, *, top_k: int,
                         history_items: torch.Tensor | None = None, exclude_items: ExcludeItems = None, vocab=None) -> SearchResult:
    """``found`` (a plain search's lists) with cold items merged in as ``settings.cold_start`` says.

    Called by :func:`genrec.decoding.search` when it is given a cold catalogue. ``history_items``:
    ``(B, T)`` history item indices (-1 = padding), for the ``"content"`` method.
    """
    cold_start = settings.cold_start
    max_cold = cold_start.max_cold(top_k)
    if cold_start.method == "fusion" and max_cold > 0:  # warm lists change too, so it runs without cold items as well
        if history_items is None:
            raise ValueError("cold_start.method='fusion' needs the users' history item indices (history_items)")
        content = content_ranking(history_items, catalogue, cold_start, exclude_items)
        return fuse_rankings(found, content, catalogue.is_cold, top_k, max_cold, cold_start.fusion_weight, cold_start.cold_boost)
    if max_cold == 0 or catalogue.num_cold == 0:
        return found
    if cold_start.method == "prefix":
        candidates, scores = prefix_candidates(model, input_ids, attention_mask, catalogue, cold_start, settings.normalization)
    else:
        if history_items is None:
            raise ValueError("cold_start.method='content' needs the users' history item indices (history_items)")
        candidates, scores = content_candidates(model, input_ids, attention_mask, history_items, catalogue, cold_start,
                                                settings.normalization, vocab)
    if exclude_items is not None:
        rows = exclude_items.tolist() if isinstance(exclude_items, torch.Tensor) else exclude_items
        for row, excluded in enumerate(rows):
            excluded = torch.as_tensor(sorted(set(int(i) for i in excluded)), dtype=torch.long, device=candidates.device)
            if len(excluded):
                scores[row] = scores[row].masked_fill(torch.isin(candidates[row], excluded), NEG_INF)
    return add_cold_items(found, candidates, scores + cold_start.score_offset, catalogue.is_cold, top_k, max_cold,
                          cold_start.placement)
