"""Exact top-K generative retrieval: the K items the model scores highest, with a certificate.

Every token's log-probability is <= 0, so a prefix's score bounds the score of every item below it
in the trie. :func:`exact_top_k` is a best-first search in two batched passes (many users at once,
shared cross-attention keys/values, one decoder call per level as in beam search):

1. beam search at ``start_width``: its K-th item score ``s_K`` is a lower bound on the true K-th
   score, and the best prefix it dropped bounds every item it did not reach. A user whose ``s_K``
   is strictly above that bound is done: no unreached item can enter the top K.
2. for the others, a threshold search: at every level, every prefix scoring at least ``s_K`` is
   expanded (no item below a weaker prefix can score ``s_K``), which is exactly the frontier a
   best-first search ordered by prefix score expands before it can stop; the beams of a batch are
   as wide as its widest user needs. The node budget ``max_width`` caps that frontier per level: a
   user who needs more gets the capped search's list and ``certified=False``.

Ties: items are ordered by score, then by item index; a list is certified only when its K-th
score is strictly above every dropped prefix, so an unreached item can never tie into it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genrec.decoding.beam_search import (
    ExcludeItems,
    Normalization,
    constrained_beam_search,
    constrained_beam_search_causal,
)
from genrec.decoding.trie import PrefixTrie

NEG_INF = float("-inf")


@dataclass
class ExactSearchResult:
    """Per user: ``items`` / ``scores`` (B, K) as beam search returns them; ``certified`` (B,) bool: the list is
    provably the model's exact top K; ``width`` (B,) the widest frontier allowed for the user (``start_width``,
    or ``max_width`` for a second pass); ``expanded`` (B,) prefixes fed to the model over both passes."""

    items: torch.Tensor
    scores: torch.Tensor
    certified: torch.Tensor
    width: torch.Tensor
    expanded: torch.Tensor


def exact_top_k(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, trie: PrefixTrie, top_k: int, *,
                start_width: int | None = None, max_width: int = 512, exclude_items: ExcludeItems = None,
                normalization: Normalization = "vocab", **search_kwargs) -> ExactSearchResult:
    """The exact top-``top_k`` items of each history (see the module docstring).

    Args:
        model: an encoder-decoder or decoder-only SID model (inputs as for
            :func:`~genrec.decoding.constrained_beam_search` / ``constrained_beam_search_causal``:
            decoder-only prompts left-padded).
        start_width: the first pass's beam width (default ``max(top_k, 16)``).
        max_width: the node budget: the widest frontier per level of the second pass.
        exclude_items: per-user items never returned (as in beam search); the certificate holds for
            the best non-excluded items.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    width = max(top_k, start_width or 16)
    if max_width < width:
        raise ValueError(f"max_width ({max_width}) must be >= the first width ({width}) and top_k ({top_k})")
    search = constrained_beam_search if model.config.is_encoder_decoder else constrained_beam_search_causal
    exclude = _as_list(exclude_items, input_ids.shape[0])

    def run(rows: torch.Tensor, beams: int, threshold: torch.Tensor | None):
        stats: dict = {}
        index = rows.to(input_ids.device)
        found, scores = search(model, input_ids.index_select(0, index),
                               None if attention_mask is None else attention_mask.index_select(0, index), trie,
                               num_beams=beams, top_k=top_k, normalization=normalization, stats=stats, threshold=threshold,
                               exclude_items=None if exclude is None else [exclude[i] for i in rows.tolist()], **search_kwargs)
        found, scores = found.cpu(), scores.cpu()
        bound = stats["pruned_bound"].cpu()
        return found, scores, torch.isneginf(bound) | (scores[:, -1] > bound), stats["expanded"].cpu()

    batch = input_ids.shape[0]
    rows = torch.arange(batch)
    items, scores, certified, expanded = run(rows, width, None)
    used_width = torch.full((batch,), width, dtype=torch.long)
    pending = rows[~certified]
    if len(pending) and max_width > width:
        threshold = scores[pending, -1]
        found, found_scores, done, more = run(pending, max_width, threshold)
        items[pending], scores[pending], certified[pending] = found, found_scores, done
        expanded[pending] += more
        used_width[pending] = max_width
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
