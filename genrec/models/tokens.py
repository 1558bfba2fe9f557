"""Where a model's token ids for SIDs, users, ``</s>`` and padding are: one object for every model type.

The T5 and decoder-only recommenders use the :class:`genrec.vocab.SIDVocab` layout (pad 0, eos 1,
unk 2, then the level codes, then user tokens). A pretrained language model keeps its own text
vocabulary and gets the SID (and user) tokens appended by its tokenizer
(:func:`genrec.tokenizer.add_sid_tokens`), so its ids differ. :class:`TokenSpace` describes either:
the data pipeline, the prefix trie and beam search only need what is here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch

from genrec.vocab import EOS_ID, PAD_ID, SIDVocab


@dataclass(frozen=True)
class TokenSpace:
    """Token ids of the SID levels (each level a contiguous range), users, eos and pad.

    Args:
        codebook_sizes: ``K_l`` per SID level (dedup level included).
        level_offsets: token id of code 0 of each level; code ``c`` of level ``l`` is ``level_offsets[l] + c``.
        eos_id, pad_id: the model's end-of-sequence and padding ids.
        user_offset: token id of user token 0 (None = no user tokens); ``num_user_tokens`` hashed users.
    """

    codebook_sizes: tuple[int, ...]
    level_offsets: tuple[int, ...]
    eos_id: int = EOS_ID
    pad_id: int = PAD_ID
    user_offset: int | None = None
    num_user_tokens: int = 0

    def __post_init__(self):
        object.__setattr__(self, "codebook_sizes", tuple(int(k) for k in self.codebook_sizes))
        object.__setattr__(self, "level_offsets", tuple(int(o) for o in self.level_offsets))
        if len(self.codebook_sizes) != len(self.level_offsets):
            raise ValueError(f"{len(self.codebook_sizes)} codebook sizes but {len(self.level_offsets)} level offsets")
        if self.num_user_tokens and self.user_offset is None:
            raise ValueError("num_user_tokens > 0 needs user_offset")

    @classmethod
    def from_vocab(cls, vocab: SIDVocab) -> TokenSpace:
        return cls(vocab.codebook_sizes, vocab.level_offsets, EOS_ID, PAD_ID,
                   vocab.user_offset if vocab.num_user_tokens else None, vocab.num_user_tokens)

    @classmethod
    def from_token_ids(cls, sid_token_ids: Mapping[tuple[int, int], int], codebook_sizes, *, eos_id: int, pad_id: int,
                       user_token_ids: list[int] | None = None) -> TokenSpace:
        """From ``{(level, code): id}`` (what :func:`genrec.tokenizer.add_sid_tokens` returns) and user token ids.

        Every level's ids (and the user ids) must be contiguous and in code order: beam search slices
        a level's logits as one range. Tokens added to a tokenizer in one call are.
        """
        offsets = []
        for level, size in enumerate(codebook_sizes):
            ids = [sid_token_ids[(level, code)] for code in range(int(size))]
            if ids != list(range(ids[0], ids[0] + len(ids))):
                raise ValueError(f"SID tokens of level {level} do not have contiguous ids in code order "
                                 f"(first ids {ids[:5]}); add them to a tokenizer that has none of them yet")
            offsets.append(ids[0])
        user_offset = None
        if user_token_ids:
            if user_token_ids != list(range(user_token_ids[0], user_token_ids[0] + len(user_token_ids))):
                raise ValueError("user tokens do not have contiguous ids")
            user_offset = user_token_ids[0]
        return cls(tuple(codebook_sizes), tuple(offsets), eos_id, pad_id, user_offset, len(user_token_ids or []))

    @property
    def depth(self) -> int:
        return len(self.codebook_sizes)

    @property
    def level_ranges(self) -> list[tuple[int, int]]:
        """``(first token id, codebook size)`` per level, for :meth:`genrec.decoding.PrefixTrie.from_item_tokens`."""
        return list(zip(self.level_offsets, self.codebook_sizes, strict=True))

    def codes_to_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes`` (..., D) per-level codes -> (..., D) token ids."""
        codes = torch.as_tensor(codes)
        if codes.shape[-1] != self.depth:
            raise ValueError(f"codes have depth {codes.shape[-1]}, the token space has {self.depth}")
        return codes.long() + torch.tensor(self.level_offsets, dtype=torch.long, device=codes.device)

    def user_token(self, user_index: int) -> int:
        """Hashed user token: ``user_offset + user_index % num_user_tokens``."""
        if not self.num_user_tokens:
            raise ValueError("this token space has no user tokens")
        return self.user_offset + int(user_index) % self.num_user_tokens

    @property
    def user_token_fn(self):
        """:meth:`user_token`, or None without user tokens (the ``add_user_token`` argument of the dataset builders)."""
        return self.user_token if self.num_user_tokens else None

    def to_dict(self) -> dict:
        return asdict(self) | {"codebook_sizes": list(self.codebook_sizes), "level_offsets": list(self.level_offsets)}

    @classmethod
    def from_dict(cls, d: dict) -> TokenSpace:
        return cls(tuple(d["codebook_sizes"]), tuple(d["level_offsets"]), int(d["eos_id"]), int(d["pad_id"]),
                   d.get("user_offset"), int(d.get("num_user_tokens", 0)))
