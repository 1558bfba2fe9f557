"""Exact top-K generative retrieval: the K items the model scores highest, with a certificate.

Every token's log-probability is <= 0, so a prefix's score bounds the score of every item below it
in the trie. Beam search drops prefixes at each level; the best dropped score bounds every item it
never reached. If the K-th item it returns scores strictly above that bound, no unreached item can
enter the top K: the list is *certified* exact, the model's own top K over the whole catalogue.

:func:`exact_top_k` is a best-first search over the trie, expanded in batches: each round keeps,
per level, the ``width`` best open prefixes of every user (one batched decoder call per level, many
users at once, shared cross-attention keys/values as in beam search), certifies each user's list
against the best prefix it left open, and widens the frontier (x ``growth``) only for the users not
yet certified. Users are done as soon as their K items score above every open prefix. A node
budget (``max_width``) bounds the worst case: a user still uncertified at that width gets the widest
search's list and ``certified=False`` (the list is then beam search at ``max_width``).

Ties: items are ordered by score, then by item index; a list is certified only when its K-th
score is strictly above the bound, so an unreached item can never tie into it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genrec.decoding.beam_search import ExcludeItems, Normalization, constrained_beam_search, constrained_beam_search_causal
from genrec.decoding.trie import PrefixTrie

NEG_INF = float("-inf")


@dataclass
class ExactSearchResult:
    """Per user: ``items`` / ``scores`` (B, K) as beam search returns them; ``certified`` (B,) bool: the list is
    provably the model's exact top K; ``width`` (B,) the frontier width that certified it (or ``max_width``);
    ``expanded`` (B,) prefixes fed to the model over all rounds (the search's cost)."""

    items: torch.Tensor
    scores: torch.Tensor
    certified: torch.Tensor
    width: torch.Tensor
    expanded: torch.Tensor


def exact_top_k(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, trie: PrefixTrie, top_k: int, *,
                start_width: int | None = None, max_width: int = 512, growth: int = 2, exclude_items: ExcludeItems = None,
                normalization: Normalization = "vocab", **search_kwargs) -> ExactSearchResult:
    """The exact top-``top_k`` items of each history (see the module docstring).

    Args:
        model: an encoder-decoder or decoder-only SID model (inputs as for
            :func:`~genrec.decoding.constrained_beam_search` / ``constrained_beam_search_causal``:
            decoder-only prompts left-padded).
        start_width: the first round's frontier width per level (default ``max(top_k, 16)``).
        max_width: the node budget: the widest frontier tried.
        growth: the frontier's growth factor between rounds (>= 2).
        exclude_items: per-user items never returned (as in beam search); the certificate holds for
            the best non-excluded items.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if growth < 2:
        raise ValueError(f"growth must be >= 2, got {growth}")
    width = max(top_k, start_width or 16)
    if max_width < width:
        raise ValueError(f"max_width ({max_width}) must be >= the first width ({width}) and top_k ({top_k})")
    search = constrained_beam_search if model.config.is_encoder_decoder else constrained_beam_search_causal
    batch, device = input_ids.shape[0], input_ids.device
    items = torch.full((batch, top_k), -1, dtype=torch.long)
    scores = torch.full((batch, top_k), NEG_INF)
    certified = torch.zeros(batch, dtype=torch.bool)
    used_width = torch.zeros(batch, dtype=torch.long)
    expanded = torch.zeros(batch, dtype=torch.long)
    pending = torch.arange(batch)
    exclude = _as_list(exclude_items, batch)
    while len(pending):
        last_round = width >= max_width
        width = min(width, max_width)
        stats: dict = {}
        rows = pending.to(device)
        found, found_scores = search(model, input_ids.index_select(0, rows),
                                     None if attention_mask is None else attention_mask.index_select(0, rows), trie,
                                     num_beams=width, top_k=top_k, normalization=normalization,
                                     exclude_items=None if exclude is None else [exclude[i] for i in pending.tolist()],
                                     stats=stats, **search_kwargs)
        found, found_scores = found.cpu(), found_scores.cpu()
        bound = stats["pruned_bound"].cpu()
        kth = found_scores[:, -1]
        done = torch.isneginf(bound) | (kth > bound)
        expanded[pending] += stats["expanded"].cpu()
        keep = done | last_round
        take = pending[keep]
        items[take], scores[take] = found[keep], found_scores[keep]
        certified[take], used_width[take] = done[keep], width
        pending = pending[~keep]
        width *= growth
    return ExactSearchResult(items, scores, certified, used_width, expanded)


def _as_list(exclude_items: ExcludeItems, batch: int) -> list[list[int]] | None:
    """Per-user exclusion sets as lists, so that they can follow the users still searched."""
    if exclude_items is None:
        return None
    if isinstance(exclude_items, torch.Tensor):
        return [[int(i) for i in row if int(i) != -1] for row in exclude_items.tolist()]
    if len(exclude_items) != batch:
        raise ValueError(f"exclude_items has {len(exclude_items)} item sets for a batch of {batch} users")
    return [[int(i) for i in s] for s in exclude_items]
