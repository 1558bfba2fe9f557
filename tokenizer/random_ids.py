"""Random IDs: L uniformly random codes per item, the no-semantics baseline (docs/method.md section 6)."""

from __future__ import annotations

import torch

from genrec.tokenizer.base import Quantizer
from genrec.tokenizer.registry import register_quantizer


@register_quantizer("random")
class RandomIDs(Quantizer):
    """Item in catalogue row i gets ``codebook_sizes[l]``-uniform random codes at every level l.

    The codes are a pure function of (seed, row): every level reads its own fixed random stream,
    so row i's codes depend neither on the batch size, nor on the embeddings' values, nor on how
    many rows follow it (a grown catalogue keeps the codes of its first rows). Nothing is learnt;
    ``fit`` only checks its input.

    Args:
        codebook_sizes: K per level (default 3 x 256).
        seed: fixes the codes.
    """

    trainable = False  # nothing is learnt: fit(x) only checks x
    takes_input_dim = False
    learns_fusion = False
    options = ()

    def __init__(self, codebook_sizes=(256, 256, 256), seed: int = 0):
        self.codebook_sizes = tuple(int(k) for k in codebook_sizes)
        if not self.codebook_sizes or min(self.codebook_sizes) < 1:
            raise ValueError(f"codebook_sizes must be a non-empty list of positive sizes, got {list(codebook_sizes)}")
        self.seed = int(seed)

    def fit(self, x: torch.Tensor, regularizers=None) -> dict:
        """No training. Returns an empty history."""
        if regularizers:
            raise ValueError("random IDs are not trained: regularisers cannot be attached")
        if x.ndim != 2:
            raise ValueError(f"embeddings must be (N, d), got shape {tuple(x.shape)}")
        return {}

    def encode(self, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
        """(N, d_in) -> (N, L) long codes on CPU; row i's codes depend only on (seed, i)."""
        n = x.shape[0]
        # One generator per level, so level l's column is a prefix of one fixed stream whatever n is.
        columns = [torch.randint(k, (n,), generator=torch.Generator().manual_seed(self.seed * 1_000_003 + level))
                   for level, k in enumerate(self.codebook_sizes)]
        return torch.stack(columns, dim=1) if n else torch.zeros(0, len(self.codebook_sizes), dtype=torch.long)

    # ---- serialisation: nothing but the config -----------------------------------------------------
    def get_config(self) -> dict:
        return {"method": "random", "codebook_sizes": list(self.codebook_sizes), "seed": self.seed}

    @classmethod
    def from_config(cls, config: dict) -> RandomIDs:
        return cls(**{k: v for k, v in config.items() if k != "method"})

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            raise ValueError(f"RandomIDs has no tensors, got {sorted(state)}")
