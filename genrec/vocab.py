"""Token-id layout shared by every model on Semantic IDs.

A SID of depth ``D`` is a row of per-level codes ``(c_0, ..., c_{D-1})`` with ``0 <= c_l < K_l``
(the last level is usually the dedup code). Each level gets its own token range so the model can
tell levels apart (TIGER):

    0 = <pad> (also the T5 decoder start token), 1 = </s> (eos), 2 = <unk>,
    then level 0 codes, level 1 codes, ..., then optional hashed user tokens.

``token = level_offsets[l] + c_l``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2
NUM_SPECIAL = 3


@dataclass(frozen=True)
class SIDVocab:
    """Vocabulary of special tokens + per-level SID tokens (+ optional user tokens).

    Args:
        codebook_sizes: ``K_l`` for each SID level, dedup level included. Length ``D``.
        num_user_tokens: size of the hashed user-token range (0 = no user tokens).
    """

    codebook_sizes: tuple[int, ...]
    num_user_tokens: int = 0

    def __post_init__(self):
        if not self.codebook_sizes or any(int(k) < 1 for k in self.codebook_sizes):
            raise ValueError(f"codebook_sizes must be positive integers, got {self.codebook_sizes}")
        object.__setattr__(self, "codebook_sizes", tuple(int(k) for k in self.codebook_sizes))

    @property
    def depth(self) -> int:
        return len(self.codebook_sizes)

    @property
    def level_offsets(self) -> tuple[int, ...]:
        offsets, start = [], NUM_SPECIAL
        for k in self.codebook_sizes:
            offsets.append(start)
            start += k
        return tuple(offsets)

    @property
    def user_offset(self) -> int:
        return NUM_SPECIAL + sum(self.codebook_sizes)

    @property
    def size(self) -> int:
        return self.user_offset + self.num_user_tokens

    def codes_to_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes`` (..., D) int per-level codes -> (..., D) token ids."""
        if codes.shape[-1] != self.depth:
            raise ValueError(f"codes have depth {codes.shape[-1]}, vocabulary has {self.depth}")
        offsets = torch.tensor(self.level_offsets, dtype=torch.long, device=codes.device)
        return codes.long() + offsets

    def tokens_to_codes(self, tokens: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`codes_to_tokens`."""
        offsets = torch.tensor(self.level_offsets, dtype=torch.long, device=tokens.device)
        return tokens.long() - offsets

    def user_token(self, user_index: int) -> int:
        """Hashed user token (TIGER): ``user_offset + user_index % num_user_tokens``."""
        if self.num_user_tokens == 0:
            raise ValueError("this vocabulary has no user tokens (num_user_tokens=0)")
        return self.user_offset + int(user_index) % self.num_user_tokens

    def to_dict(self) -> dict:
        return asdict(self) | {"codebook_sizes": list(self.codebook_sizes)}

    @classmethod
    def from_dict(cls, d: dict) -> SIDVocab:
        return cls(codebook_sizes=tuple(d["codebook_sizes"]), num_user_tokens=int(d.get("num_user_tokens", 0)))
