"""The token layout of every model on Semantic IDs: one class, :class:`TokenSpace`.

A SID of depth ``D`` is a row of per-level codes ``(c_0, ..., c_{D-1})`` with ``0 <= c_l < K_l``
(the last level is usually the dedup code). Each level gets its own contiguous token range so the
model can tell levels apart (TIGER): ``token = level_offsets[l] + c_l``.

genrec's own models (t5, causal) use :meth:`TokenSpace.sid_layout`:

    0 = <pad> (also the T5 decoder start token), 1 = </s> (eos), 2 = <unk>,
    then level 0 codes, level 1 codes, ..., then optional hashed user tokens.

A pretrained language model keeps its own text vocabulary and gets the SID (and user) tokens appended
by its tokenizer (:func:`genrec.models.lora.extend_tokenizer`), so its ids differ; the same class
describes it (:meth:`TokenSpace.from_token_ids`). The data pipeline, the prefix trie and beam search
only need what is here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2
NUM_SPECIAL = 3


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
    def sid_layout(cls, codebook_sizes, num_user_tokens: int = 0) -> TokenSpace:
        """The layout of genrec's own models (t5, causal): pad 0, eos 1, unk 2, the levels' codes, then user tokens."""
        sizes = tuple(int(k) for k in codebook_sizes)
        if not sizes or any(k < 1 for k in sizes):
            raise ValueError(f"codebook_sizes must be positive integers, got {codebook_sizes}")
        offsets = tuple(NUM_SPECIAL + sum(sizes[:level]) for level in range(len(sizes)))
        user_offset = NUM_SPECIAL + sum(sizes)
        return cls(sizes, offsets, EOS_ID, PAD_ID, user_offset if num_user_tokens else None, int(num_user_tokens))

    @classmethod
    def from_vocab(cls, vocab: TokenSpace) -> TokenSpace:
        """``vocab`` itself (kept for code written when the SID layout had a class of its own)."""
        return vocab

    @property
    def is_sid_layout(self) -> bool:
        """Whether this is :meth:`sid_layout` (genrec's own models) rather than a pretrained LM's text vocabulary."""
        return self == TokenSpace.sid_layout(self.codebook_sizes, self.num_user_tokens)

    def sid_layout_dict(self) -> dict:
        """``{"codebook_sizes", "num_user_tokens"}``: what defines a :meth:`sid_layout` (a bundle's ``vocab`` entry)."""
        return {"codebook_sizes": list(self.codebook_sizes), "num_user_tokens": self.num_user_tokens}

    @property
    def size(self) -> int:
        """Token ids a model needs: one past the largest id of any level, user token, eos or pad."""
        return max([o + k for o, k in zip(self.level_offsets, self.codebook_sizes, strict=True)]
                   + [(self.user_offset or 0) + self.num_user_tokens, self.eos_id + 1, self.pad_id + 1])

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

    def tokens_to_codes(self, tokens: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`codes_to_tokens`."""
        return torch.as_tensor(tokens).long() - torch.tensor(self.level_offsets, dtype=torch.long, device=tokens.device)

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
        """From :meth:`to_dict`, or from a :meth:`sid_layout_dict` (older runs' ``vocab.json``, bundles' ``vocab``)."""
        if "level_offsets" not in d:
            return cls.sid_layout(d["codebook_sizes"], int(d.get("num_user_tokens", 0)))
        return cls(tuple(d["codebook_sizes"]), tuple(d["level_offsets"]), int(d["eos_id"]), int(d["pad_id"]),
                   d.get("user_offset"), int(d.get("num_user_tokens", 0)))


class SIDVocab:
    """``SIDVocab(codebook_sizes, num_user_tokens)`` is :meth:`TokenSpace.sid_layout`: the name is kept for code
    written when the SID layout had a class of its own; what it returns is a :class:`TokenSpace`."""

    def __new__(cls, codebook_sizes, num_user_tokens: int = 0) -> TokenSpace:  # type: ignore[misc]
        return TokenSpace.sid_layout(codebook_sizes, num_user_tokens)

    @staticmethod
    def from_dict(d: dict) -> TokenSpace:
        return TokenSpace.sid_layout(d["codebook_sizes"], int(d.get("num_user_tokens", 0)))


__all__ = ["EOS_ID", "NUM_SPECIAL", "PAD_ID", "UNK_ID", "SIDVocab", "TokenSpace"]
