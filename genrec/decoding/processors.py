"""The trie constraint in ``model.generate`` form: a vectorised ``LogitsProcessor`` and a ``prefix_allowed_tokens_fn``.

For users who want HF ``generate`` (sampling, other strategies, or as a reference). For fast
top-k recommendation use :func:`genrec.decoding.constrained_beam_search`, which applies the same
mask inside a loop that avoids ``generate``'s per-beam encoder copies.

Both read the SID generated so far from ``input_ids[:, prompt_length:]``: ``prompt_length`` is 1
for encoder-decoder models (the decoder start token) and the (padded) prompt length for
decoder-only models. At SID position ``l`` only the trie's allowed level-``l`` tokens stay; after
the last level only ``eos`` is allowed (``generate`` with ``max_new_tokens=D`` never gets there).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import LogitsProcessor

from genrec.decoding.trie import PrefixTrie
from genrec.vocab import EOS_ID, TokenSpace


def _level_offsets(trie: PrefixTrie, vocab: TokenSpace | None) -> tuple[int, ...]:
    if vocab is not None:
        if tuple(vocab.codebook_sizes) != tuple(trie.codebook_sizes):
            raise ValueError(f"vocab codebook sizes {vocab.codebook_sizes} differ from the trie's {trie.codebook_sizes}")
        return tuple(vocab.level_offsets)
    if trie.level_offsets is None:
        raise ValueError("the trie has no level_offsets (built from codes): pass vocab=")
    return tuple(trie.level_offsets)


def _prefix_nodes(trie: PrefixTrie, offsets: tuple[int, ...], sid_tokens: torch.Tensor) -> torch.Tensor:
    """``(R, L)`` generated SID tokens -> ``(R,)`` depth-``L`` trie nodes (-1 for prefixes not in the catalogue)."""
    codes = sid_tokens - torch.tensor(offsets[: sid_tokens.shape[1]], dtype=torch.long, device=sid_tokens.device)
    return trie.walk(codes)


class TrieLogitsProcessor(LogitsProcessor):
    """Sets every token the trie does not allow after each row's SID prefix to -inf; vectorised over rows.

    Args:
        trie: the catalogue's :class:`PrefixTrie` (moved to the scores' device on first use).
        vocab: the :class:`~genrec.vocab.TokenSpace` (only needed when the trie was built from raw codes).
        prompt_length: number of ``input_ids`` columns before the SID (1 for encoder-decoder models).
        eos_token_id: the only token allowed after a complete SID.
    """

    def __init__(self, trie: PrefixTrie, vocab: TokenSpace | None = None, prompt_length: int = 1, eos_token_id: int = EOS_ID):
        self.trie = trie
        self.level_offsets = _level_offsets(trie, vocab)
        self.prompt_length = prompt_length
        self.eos_token_id = eos_token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        level = input_ids.shape[1] - self.prompt_length
        if level < 0:
            raise ValueError(f"input_ids have {input_ids.shape[1]} columns, fewer than prompt_length={self.prompt_length}")
        masked = torch.full_like(scores, float("-inf"))
        if level >= self.trie.depth:
            masked[:, self.eos_token_id] = scores[:, self.eos_token_id]
            return masked
        self.trie = self.trie.to(scores.device)
        nodes = _prefix_nodes(self.trie, self.level_offsets, input_ids[:, self.prompt_length :].long())
        allowed = self.trie.allowed_mask(level, nodes)
        start, stop = self.level_offsets[level], self.level_offsets[level] + self.trie.codebook_sizes[level]
        masked[:, start:stop] = scores[:, start:stop].masked_fill(~allowed, float("-inf"))
        return masked


def make_prefix_allowed_tokens_fn(
    trie: PrefixTrie, vocab: TokenSpace | None = None, prompt_length: int = 1, eos_token_id: int = EOS_ID
) -> Callable[[int, torch.Tensor], list[int]]:
    """A ``prefix_allowed_tokens_fn(batch_id, input_ids_row) -> allowed token ids`` for ``generate``.

    ``generate`` calls it once per row and step (a Python loop inside transformers); prefer
    :class:`TrieLogitsProcessor`. A prefix outside the catalogue (only reachable through -inf
    beams) gets ``[eos]``, since ``generate`` rejects an empty list.
    """
    offsets = _level_offsets(trie, vocab)

    def prefix_allowed_tokens_fn(batch_id: int, input_ids: torch.Tensor) -> list[int]:
        sid_tokens = input_ids[prompt_length:].long()
        level = sid_tokens.shape[0]
        if level >= trie.depth:
            return [eos_token_id]
        node = _prefix_nodes(trie, offsets, sid_tokens.to(trie.device)[None])
        if int(node) < 0:
            return [eos_token_id]
        codes = trie.allowed_mask(level, node)[0].nonzero().squeeze(1)
        return (codes + offsets[level]).tolist()

    return prefix_allowed_tokens_fn
