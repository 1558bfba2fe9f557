"""Trie-constrained beam search over a catalogue's Semantic IDs, batched over users and beams.

Why not ``model.generate``: for encoder-decoder beams it copies the encoder output per beam,
projects the cross-attention keys/values for every copy and reorders that (large) cache at every
step (PERF_NOTES.md). Here, with public transformers APIs only:

* the encoder runs once per user, and decoding step 0 runs one row per user, which fills the
  ``EncoderDecoderCache``'s cross-attention part once per user;
* later steps feed ``B * beams`` decoder rows while the cross-attention cache keeps ``B`` rows: a
  registered attention function (``AttentionInterface``, switched on for the duration of the call
  with ``model.set_attn_implementation``) lets each user's beams attend to that user's keys/values
  as one multi-query attention, so nothing is copied per beam;
* only the small self-attention cache is reordered between steps.

Each step takes log-probabilities of the level's code tokens, masks codes the trie does not allow
(-inf), and keeps the best ``num_beams`` of ``beams x codes`` per user with one ``topk``: no Python
loop over users or beams.

Scores are sums of token log-probabilities. ``normalization="vocab"`` (default) takes the softmax
over the whole vocabulary, as in training, in :func:`score_all_items` and in ``generate``;
``"level"`` renormalises over the level's code tokens only. Final lists are ordered by score, ties
by item index, so results are deterministic and, with ``num_beams`` at least the number of trie
nodes of every level, equal to exhaustively ranking the whole catalogue.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from transformers import AttentionInterface, AttentionMaskInterface, DynamicCache, EncoderDecoderCache
from transformers.masking_utils import sdpa_mask
from transformers.modeling_outputs import BaseModelOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from genrec.decoding.trie import PrefixTrie
from genrec.vocab import TokenSpace

Normalization = Literal["vocab", "level"]
ExcludeItems = torch.Tensor | Sequence[Iterable[int]] | None

NEG_INF = float("-inf")
logger = logging.getLogger(__name__)
SHARED_KV_ATTENTION = "genrec_shared_kv"


# ---------------------------------------------------------------------- shared cross-attention


def shared_kv_attention(module, query, key, value, attention_mask, **kwargs):
    """SDPA attention in which ``query`` may hold ``beams`` rows per key/value row.

    ``query`` is ``(users * beams, heads, q_len, head_dim)``, ``key``/``value`` are
    ``(users, heads, kv_len, head_dim)`` and ``attention_mask`` has ``users`` rows: each user's beams
    become that user's query positions (one matmul per user, keys/values read once). With equal
    batch sizes this is plain ``sdpa``, so the encoder and the self-attention are unaffected.
    """
    sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]
    num_rows, num_users = query.shape[0], key.shape[0]
    if num_rows == num_users:
        return sdpa(module, query, key, value, attention_mask, **kwargs)
    if num_rows % num_users != 0:
        raise ValueError(f"query batch {num_rows} is not a multiple of the key/value batch {num_users}")
    beams = num_rows // num_users
    _, heads, q_len, head_dim = query.shape
    if q_len != 1:  # not reached by beam search (one new token per step): repeat keys/values instead
        key, value = key.repeat_interleave(beams, dim=0), value.repeat_interleave(beams, dim=0)
        if attention_mask is not None:
            attention_mask = attention_mask.repeat_interleave(beams, dim=0)
        return sdpa(module, query, key, value, attention_mask, **kwargs)
    query = query.view(num_users, beams, heads, head_dim).transpose(1, 2)  # beams act as query positions
    output, _ = sdpa(module, query, key, value, attention_mask, **kwargs)  # (users, beams, heads, head_dim)
    return output.reshape(num_rows, 1, heads, head_dim), None


AttentionInterface.register(SHARED_KV_ATTENTION, shared_kv_attention)
AttentionMaskInterface.register(SHARED_KV_ATTENTION, sdpa_mask)


@contextmanager
def _inference_mode(model, share_cross_attention: bool):
    """Eval mode (+ the shared-K/V attention) for the duration of a call; the model is restored after.

    Yields whether the shared attention is active (False if the model cannot switch its attention
    implementation; decoding then copies the cross-attention state per beam, same results).
    """
    was_training = model.training
    original = model.config._attn_implementation
    model.eval()
    shared = False
    try:
        if share_cross_attention:
            try:
                model.set_attn_implementation(SHARED_KV_ATTENTION)
            except (ValueError, KeyError, NotImplementedError) as error:
                logger.warning("cannot share cross-attention keys/values across beams (%s); copying them per beam", error)
            shared = model.config._attn_implementation == SHARED_KV_ATTENTION
        with torch.no_grad():
            yield shared
    finally:
        if shared:
            model.set_attn_implementation(original)
        model.train(was_training)


def _cache_argument(model) -> str:
    """The name of the model's KV-cache argument: ``cache`` (transformers >= 5.2x; ``past_key_values`` is
    deprecated there and removed in 5.40) or ``past_key_values`` (older 5.x releases)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wraps forward as (*args, **kwargs)
    for cls in type(base).__mro__:  # the first forward that names either (a subclass may take **kwargs)
        forward = cls.__dict__.get("forward")
        parameters = inspect.signature(forward).parameters if forward is not None else {}
        for name in ("cache", "past_key_values"):
            if name in parameters:
                return name
    return "past_key_values"


# ---------------------------------------------------------------------- search core


def _level_log_probs(logits: torch.Tensor, offset: int, size: int, normalization: Normalization) -> torch.Tensor:
    """``(M, V)`` logits -> ``(M, size)`` fp32 log-probabilities of the level's code tokens."""
    logits = logits.float()
    if normalization == "vocab":
        return torch.log_softmax(logits, dim=-1)[:, offset : offset + size]
    if normalization == "level":
        return torch.log_softmax(logits[:, offset : offset + size], dim=-1)
    raise ValueError(f"normalization must be 'vocab' or 'level', got {normalization!r}")


def _exclusion_keys(exclude_items: ExcludeItems, batch: int, num_items: int, device) -> torch.Tensor | None:
    """Per-user item sets -> sorted unique ``user * num_items + item`` keys (``None`` when nothing is excluded)."""
    if exclude_items is None:
        return None
    if isinstance(exclude_items, torch.Tensor):
        if exclude_items.dim() != 2 or exclude_items.shape[0] != batch:
            raise ValueError(f"exclude_items tensor must be (batch={batch}, E) padded with -1, got {tuple(exclude_items.shape)}")
        items = exclude_items.long().to(device)
        users = torch.arange(batch, device=device)[:, None].expand_as(items)
        is_item = items != -1  # -1 is padding
        items, users = items[is_item], users[is_item]
    else:
        if len(exclude_items) != batch:
            raise ValueError(f"exclude_items has {len(exclude_items)} item sets for a batch of {batch} users")
        lists = [[int(i) for i in item_set] for item_set in exclude_items]
        users = torch.tensor([u for u, item_set in enumerate(lists) for _ in item_set], dtype=torch.long, device=device)
        items = torch.tensor([i for item_set in lists for i in item_set], dtype=torch.long, device=device)
    bad = (items < 0) | (items >= num_items)
    if bool(bad.any()):
        first = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"exclude_items: user {int(users[first])} lists item {int(items[first])}, outside the catalogue [0, {num_items})"
        )
    return torch.unique(users * num_items + items)


def _is_excluded(items: torch.Tensor, keys: torch.Tensor, num_items: int) -> torch.Tensor:
    """``items`` (B, C) (-1 = none) -> (B, C) bool, True where the item is in its user's excluded set."""
    if keys.numel() == 0:
        return torch.zeros_like(items, dtype=torch.bool)
    users = torch.arange(items.shape[0], device=items.device)[:, None]
    query = users * num_items + items.clamp(min=0)
    position = torch.searchsorted(keys, query.reshape(-1)).view(query.shape).clamp(max=keys.numel() - 1)
    return (keys[position] == query) & (items >= 0)


def _rank_final(scores: torch.Tensor, items: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Order (B, C) candidates by score (descending), ties by item index; keep ``top_k``; pad with -1 / -inf."""
    invalid_last = torch.where(items >= 0, items, torch.iinfo(torch.long).max)
    order = torch.sort(invalid_last, dim=1, stable=True).indices
    scores, items = scores.gather(1, order), items.gather(1, order)
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :top_k]
    scores, items = scores.gather(1, order), items.gather(1, order)
    missing = top_k - scores.shape[1]
    if missing > 0:
        scores = torch.cat([scores, scores.new_full((scores.shape[0], missing), NEG_INF)], dim=1)
        items = torch.cat([items, items.new_full((items.shape[0], missing), -1)], dim=1)
    return items, scores


def _rank_final_top(candidates: torch.Tensor, nodes: torch.Tensor, trie, level: int, size: int,
                    top_k: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """:func:`_rank_final` for the common case, touching only the best ``top_k + 1`` candidates per user.

    When every user's ``top_k``-th best score is strictly above the next one (no tie at the cut and
    at least ``top_k`` valid candidates), the top-``top_k`` set is unique, so only those candidates
    need their items looked up and ordered (score descending, ties by item). That is the same result
    as ranking all ``width x K`` leaves, without building (B, width x K) item and sort tensors, which
    on CPU cost as much as a decoder layer. Returns None when a tie or a -inf reaches the cut; the
    caller then ranks everything.
    """
    batch, num_candidates = candidates.shape
    if num_candidates <= top_k:
        return None
    values, picked = candidates.topk(top_k + 1, dim=1)
    if not bool((values[:, top_k - 1] > values[:, top_k]).all()):
        return None
    values, picked = values[:, :top_k], picked[:, :top_k]
    parent, code = picked // size, picked % size
    items = trie.leaf_items(trie.step(level, nodes.gather(1, parent), code))
    return _rank_final(values, items, top_k)


def _beam_search(
    first_logits: torch.Tensor,
    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    trie: PrefixTrie,
    level_offsets: tuple[int, ...],
    num_beams: int,
    top_k: int,
    exclusion_keys: torch.Tensor | None,
    normalization: Normalization,
    stats: dict | None = None,
    threshold: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The model-independent search loop.

    Args:
        first_logits: ``(B, V)`` next-token logits of step 0 (one row per user).
        step: ``step(rows, tokens) -> (len(rows), V)`` logits: reorder the model's per-row state so
            that new row ``j`` continues old row ``rows[j]``, feed ``tokens`` (``(len(rows), 1)``).
        stats: if a dict, filled with ``pruned_bound`` (B,): the best score of any prefix the beams
            dropped (-inf if none), an upper bound on every item the search did not reach (token
            log-probabilities are <= 0, so no completion scores above its prefix); and ``expanded``
            (B,): prefixes fed to the model per user (the root included).
        threshold: (B,) scores; prefixes scoring below their user's threshold are dropped at every
            level (no item below them can reach it), and the beams shrink to the most prefixes any
            user keeps (at most ``num_beams``): the threshold search of :func:`genrec.decoding.exact_top_k`.
    """
    batch, device = first_logits.shape[0], first_logits.device
    nodes = torch.zeros(batch, 1, dtype=torch.long, device=device)  # every user starts at the root
    beam_scores = torch.zeros(batch, 1, dtype=torch.float32, device=device)
    pruned_bound = torch.full((batch,), NEG_INF, device=device)
    expanded = torch.ones(batch, dtype=torch.long, device=device)
    logits = first_logits
    for level in range(trie.depth):
        size, width = trie.codebook_sizes[level], nodes.shape[1]
        log_probs = _level_log_probs(logits, level_offsets[level], size, normalization).view(batch, width, size)
        allowed = trie.allowed_mask(level, nodes.reshape(-1)).view(batch, width, size)
        candidates = (beam_scores[:, :, None] + log_probs).masked_fill(~allowed, NEG_INF).view(batch, width * size)

        if level == trie.depth - 1:
            if stats is not None:
                stats.update(pruned_bound=pruned_bound, expanded=expanded)
            if exclusion_keys is None:
                ranked = _rank_final_top(candidates, nodes, trie, level, size, top_k)
                if ranked is not None:
                    return ranked
            codes = torch.arange(size, device=device)
            leaves = trie.step(level, nodes[:, :, None], codes)  # (B, width, K), -1 where not allowed
            items = trie.leaf_items(leaves).view(batch, width * size)
            if exclusion_keys is not None:
                excluded = _is_excluded(items, exclusion_keys, trie.num_items)
                candidates = candidates.masked_fill(excluded, NEG_INF)
                items = items.masked_fill(excluded, -1)
            return _rank_final(candidates, items, top_k)

        # Beams that run out of valid continuations keep a -inf score and node -1 (a dead beam).
        keep = min(num_beams, width * size)
        if threshold is not None:
            candidates = candidates.masked_fill(candidates < threshold[:, None], NEG_INF)
            keep = max(1, min(keep, int(torch.isfinite(candidates).sum(dim=1).max())))
        if stats is not None and keep < width * size:  # the best candidate dropped here bounds everything below it
            kept_and_next = candidates.topk(keep + 1, dim=1).values
            pruned_bound = torch.maximum(pruned_bound, kept_and_next[:, keep])
        beam_scores, picked = candidates.topk(keep, dim=1)
        parent, code = picked // size, picked % size
        is_valid = allowed.view(batch, width * size).gather(1, picked)
        nodes = torch.where(is_valid, trie.step(level, nodes.gather(1, parent), code), -1)
        rows = (torch.arange(batch, device=device)[:, None] * width + parent).reshape(-1)
        logits = step(rows, (code + level_offsets[level]).reshape(-1, 1))
        expanded = expanded + is_valid.sum(dim=1)
    raise AssertionError("unreachable: the last level returns")


def _prepare(trie: PrefixTrie, vocab: TokenSpace | None, num_beams: int, top_k: int | None, device):
    if vocab is not None:
        if tuple(vocab.codebook_sizes) != tuple(trie.codebook_sizes):
            raise ValueError(f"vocab codebook sizes {vocab.codebook_sizes} differ from the trie's {trie.codebook_sizes}")
        level_offsets = tuple(vocab.level_offsets)
    elif trie.level_offsets is not None:
        level_offsets = tuple(trie.level_offsets)
    else:
        raise ValueError("the trie has no level_offsets (built from codes): pass vocab=")
    top_k = num_beams if top_k is None else int(top_k)
    if num_beams < 1 or not 1 <= top_k <= num_beams:
        raise ValueError(f"need num_beams >= 1 and 1 <= top_k <= num_beams, got num_beams={num_beams}, top_k={top_k}")
    return trie.to(device), level_offsets, top_k


def _check_inputs(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
    if attention_mask is None:
        return torch.ones_like(input_ids)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask shape {tuple(attention_mask.shape)} != input_ids shape {tuple(input_ids.shape)}")
    return attention_mask


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


# ---------------------------------------------------------------------- public entry points


def constrained_beam_search(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    trie: PrefixTrie,
    num_beams: int,
    top_k: int | None = None,
    exclude_items: ExcludeItems = None,
    vocab: TokenSpace | None = None,
    *,
    normalization: Normalization = "vocab",
    autocast_dtype: torch.dtype | None = None,
    share_cross_attention: bool = True,
    stats: dict | None = None,
    threshold: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``top_k`` catalogue items per user of an encoder-decoder model (e.g. ``T5ForConditionalGeneration``).

    Args:
        model: encoder-decoder model on the SID vocabulary; the decoder starts at
            ``config.decoder_start_token_id`` and emits exactly ``trie.depth`` tokens. Inputs are moved
            to the model's device; the model runs in eval mode and is restored afterwards.
        input_ids, attention_mask: ``(B, S)`` encoder inputs (history tokens + eos, right-padded).
        trie: the catalogue's :class:`PrefixTrie`.
        num_beams: beams kept per user at every level.
        top_k: items returned per user (default ``num_beams``; at most ``num_beams``).
        exclude_items: per-user items never returned (e.g. the history): a list of ``B`` iterables or a
            ``(B, E)`` tensor padded with -1. They are removed at the last level only (a prefix
            cannot be excluded before its leaf is known), so the returned list equals "the best
            non-excluded items among the beams' leaves"; it is the exact non-excluded top-k when the
            beams reaching the last level still hold ``top_k`` non-excluded items of the exact
            ranking, which full-width beams guarantee and ``num_beams >= top_k + |excluded|`` makes
            likely.
        vocab: the :class:`~genrec.vocab.TokenSpace` (needed only when the trie was built from raw codes).
        normalization: ``"vocab"`` (softmax over the whole vocabulary, like training and
            ``generate``) or ``"level"`` (over the level's code tokens only).
        autocast_dtype: run the model under ``torch.autocast`` with this dtype (scores stay fp32).
        share_cross_attention: share each user's cross-attention keys/values across its beams (see the
            module docstring); False copies them to every beam and reorders them with the beams (for comparison).
        stats: a dict to receive the search's certificate (``pruned_bound``) and ``expanded`` counts
            (see :func:`genrec.decoding.exact_top_k`, which uses them).
        threshold: (B,) per-user score threshold: prefixes below it are dropped (see ``_beam_search``).

    Returns:
        ``items`` ``(B, top_k)`` long item indices, best first, ties by item index; -1 where fewer
        than ``top_k`` (non-excluded) items are reachable. ``scores`` ``(B, top_k)`` fp32 sums of the
        ``D`` token log-probabilities; -inf for -1 items. ``generate`` reports ``score / D``.
    """
    if not model.config.is_encoder_decoder:
        raise ValueError("constrained_beam_search needs an encoder-decoder model; use constrained_beam_search_causal")
    start_token = model.config.decoder_start_token_id
    if start_token is None:
        raise ValueError("model.config.decoder_start_token_id is not set")
    device = _model_device(model)
    attention_mask = _check_inputs(input_ids, attention_mask).to(device)
    input_ids = input_ids.to(device)
    trie, level_offsets, top_k = _prepare(trie, vocab, num_beams, top_k, device)
    batch = input_ids.shape[0]
    exclusion_keys = _exclusion_keys(exclude_items, batch, trie.num_items, device)
    autocast = torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)

    with _inference_mode(model, share_cross_attention) as shared, autocast:
        encoder_outputs = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        start = torch.full((batch, 1), start_token, dtype=torch.long, device=device)
        first = model(encoder_outputs=encoder_outputs, attention_mask=attention_mask, decoder_input_ids=start,
                      **{_cache_argument(model): cache}, use_cache=True).logits[:, -1]
        state = {"encoder_outputs": encoder_outputs, "attention_mask": attention_mask}

        def step(rows: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
            cache.self_attention_cache.reorder_cache(rows)
            if not shared:
                # Copied per beam: the cross-attention state follows the beams as the self-attention cache
                # does (at step 1 ``rows`` are user indices; the number of beams may still grow after it,
                # when a level has fewer codes than ``num_beams``).
                cache.cross_attention_cache.reorder_cache(rows)
                hidden = state["encoder_outputs"].last_hidden_state.index_select(0, rows)
                state.update(encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                             attention_mask=state["attention_mask"].index_select(0, rows))
            out = model(encoder_outputs=state["encoder_outputs"], attention_mask=state["attention_mask"],
                        decoder_input_ids=tokens, **{_cache_argument(model): cache}, use_cache=True)
            return out.logits[:, -1]

        return _beam_search(first, step, trie, level_offsets, num_beams, top_k, exclusion_keys, normalization, stats,
                            None if threshold is None else threshold.to(device))


def constrained_beam_search_causal(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    trie: PrefixTrie,
    num_beams: int,
    top_k: int | None = None,
    exclude_items: ExcludeItems = None,
    vocab: TokenSpace | None = None,
    *,
    normalization: Normalization = "vocab",
    autocast_dtype: torch.dtype | None = None,
    stats: dict | None = None,
    threshold: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`constrained_beam_search` for a decoder-only model (``LlamaForCausalLM``, ``Qwen2ForCausalLM``, ...).

    ``input_ids``/``attention_mask`` ``(B, P)`` are prompts (history tokens + eos) LEFT-padded, so
    every prompt ends at the last column. Position ids count real tokens only. The prompt's KV
    cache is computed once per user, then repeated per beam; each step reorders it. Same returns.
    """
    if model.config.is_encoder_decoder:
        raise ValueError("constrained_beam_search_causal needs a decoder-only model; use constrained_beam_search")
    device = _model_device(model)
    prompt_mask = _check_inputs(input_ids, attention_mask).to(device)
    if not bool(prompt_mask[:, -1].all()):
        rows = (prompt_mask[:, -1] == 0).nonzero().squeeze(1)[:5].tolist()
        raise ValueError(f"prompts must be left-padded (rows {rows} end with padding)")
    input_ids = input_ids.to(device)
    trie, level_offsets, top_k = _prepare(trie, vocab, num_beams, top_k, device)
    batch = input_ids.shape[0]
    exclusion_keys = _exclusion_keys(exclude_items, batch, trie.num_items, device)
    prompt_lengths = prompt_mask.sum(dim=1)
    autocast = torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)

    with _inference_mode(model, share_cross_attention=False), autocast:
        cache = DynamicCache()
        positions = (prompt_mask.cumsum(dim=1) - 1).clamp(min=0)
        first = model(input_ids=input_ids, attention_mask=prompt_mask, position_ids=positions,
                      **{_cache_argument(model): cache}, use_cache=True, logits_to_keep=1).logits[:, -1]
        generated = 0

        def step(rows: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
            nonlocal generated
            cache.reorder_cache(rows)
            generated += 1
            beams = rows.numel() // batch
            users = torch.arange(batch, device=device).repeat_interleave(beams)
            mask = torch.cat([prompt_mask[users], prompt_mask.new_ones(rows.numel(), generated)], dim=1)
            position = (prompt_lengths[users] + generated - 1)[:, None]
            out = model(input_ids=tokens, attention_mask=mask, position_ids=position, **{_cache_argument(model): cache},
                        use_cache=True, logits_to_keep=1)
            return out.logits[:, -1]

        return _beam_search(first, step, trie, level_offsets, num_beams, top_k, exclusion_keys, normalization, stats,
                            None if threshold is None else threshold.to(device))


def score_all_items(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    item_tokens: torch.Tensor,
    *,
    vocab: TokenSpace | None = None,
    normalization: Normalization = "vocab",
    chunk_size: int = 4096,
) -> torch.Tensor:
    """Exhaustive teacher-forced scores: ``(B, N)`` fp32 sum of log-probabilities of each item's ``D`` tokens.

    The reference for tests and tiny catalogues (cost ``B * N`` decoder sequences, ``chunk_size`` per
    forward). Uses the model's plain forward (no cache, no shared attention). Works for
    encoder-decoder models (decoder input = start token + the item's first ``D - 1`` tokens) and
    decoder-only models (LEFT-padded prompt followed by the item's tokens). ``normalization="level"``
    needs ``vocab``.
    """
    batch, num_items = input_ids.shape[0], item_tokens.shape[0]
    candidates = item_tokens[None].expand(batch, *item_tokens.shape)
    return score_candidates(model, input_ids, attention_mask, candidates, vocab=vocab, normalization=normalization,
                            chunk_size=chunk_size).view(batch, num_items)


def score_candidates(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    candidate_tokens: torch.Tensor,
    *,
    vocab: TokenSpace | None = None,
    normalization: Normalization = "vocab",
    chunk_size: int = 4096,
) -> torch.Tensor:
    """Teacher-forced scores of each row's own candidates: ``(B, M)`` fp32 sums of token log-probabilities.

    ``candidate_tokens``: ``(B, M, L)`` token ids, row ``b``'s ``M`` candidates, each the first ``L``
    tokens of a SID (``L`` may be shorter than the SID: a prefix's score). Same model handling and
    normalisations as :func:`score_all_items` (cost ``B * M`` decoder sequences, ``chunk_size`` per forward).
    """
    device = _model_device(model)
    attention_mask = _check_inputs(input_ids, attention_mask).to(device)
    input_ids, candidate_tokens = input_ids.to(device), candidate_tokens.long().to(device)
    if normalization == "level" and vocab is None:
        raise ValueError("normalization='level' needs vocab")
    if candidate_tokens.dim() != 3 or candidate_tokens.shape[0] != input_ids.shape[0]:
        raise ValueError(f"candidate_tokens must be (B={input_ids.shape[0]}, M, L), got {tuple(candidate_tokens.shape)}")
    batch, num_candidates, depth = candidate_tokens.shape
    pairs_user = torch.arange(batch, device=device).repeat_interleave(num_candidates)
    pair_tokens = candidate_tokens.reshape(batch * num_candidates, depth)
    scores = torch.empty(batch * num_candidates, dtype=torch.float32, device=device)
    encoder_decoder = model.config.is_encoder_decoder
    with _inference_mode(model, share_cross_attention=False):
        for start in range(0, batch * num_candidates, chunk_size):
            users = pairs_user[start : start + chunk_size]
            targets = pair_tokens[start : start + chunk_size]  # (R, L)
            if encoder_decoder:
                start_tokens = targets.new_full((len(users), 1), model.config.decoder_start_token_id)
                logits = model(input_ids=input_ids[users], attention_mask=attention_mask[users],
                               decoder_input_ids=torch.cat([start_tokens, targets[:, :-1]], dim=1)).logits
            else:
                prompt_len = input_ids.shape[1]
                mask = torch.cat([attention_mask[users], attention_mask.new_ones(len(users), depth)], dim=1)
                positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
                logits = model(input_ids=torch.cat([input_ids[users], targets], dim=1), attention_mask=mask,
                               position_ids=positions).logits[:, prompt_len - 1 : prompt_len - 1 + depth]
            token_scores = []
            for level in range(depth):
                if normalization == "level":
                    offset, size = vocab.level_offsets[level], vocab.codebook_sizes[level]
                    level_logp = _level_log_probs(logits[:, level], offset, size, "level")
                    token_scores.append(level_logp.gather(1, (targets[:, level] - offset)[:, None]).squeeze(1))
                else:
                    logp = torch.log_softmax(logits[:, level].float(), dim=-1)
                    token_scores.append(logp.gather(1, targets[:, level, None]).squeeze(1))
            scores[start : start + len(users)] = torch.stack(token_scores, dim=1).sum(dim=1)
    return scores.view(batch, num_candidates)
