"""Random IDs: L uniformly random codes per item (the no-semantics baseline)."""

from __future__ import annotations

import torch

from genrec.tokenizer.base import Quantizer
from genrec.tokenizer.registry import register_quantizer


@register_quantizer("random")
class RandomIDs(Quantizer):
    """Each item gets ``codebook_sizes[l]`` uniform random codes at level l, fixed by ``seed``.

    Codes depend only on the item's row in the catalogue passed to :meth:`fit`; ``encode`` of new
    rows continues the same random stream deterministically (row i always gets the same codes).
    """

    def __init__(self, codebook_sizes=(256, 256, 256), seed: int = 0):
        self.codebook_sizes = tuple(int(k) for k in codebook_sizes)
        self.seed = int(seed)

    def fit(self, x: torch.Tensor, regularizers=None, **kwargs) -> dict:
        if regularizers:
            raise ValueError("random IDs are not trained: regularisers cannot be attached")
        return {}

    def encode(self, x: torch.Tensor, batch_size: int = 8192, start: int = 0) -> torch.Tensor:
        n = x.shape[0]
        gen = torch.Generator().manual_seed(self.seed)
        # Draw a fixed-size stream up to start+n so row i's codes never depend on the batch size.
        cols = [torch.randint(k, (start + n,), generator=gen)[start:] for k in self.codebook_sizes]
        return torch.stack(cols, dim=1)

    def get_config(self) -> dict:
        return {"method": "random", "codebook_sizes": list(self.codebook_sizes), "seed": self.seed}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
