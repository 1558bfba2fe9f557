"""Code diversity (LETTER-style), ours: hypersphere uniformity of the encoder outputs.

LETTER's diversity loss acts on the codebook vectors themselves (clustered code embeddings); by
design a regulariser here never sees the quantiser or its codebooks (tokenizer/base.py), and the
RQ-VAE's straight-through estimator gives a regulariser no gradient path to them. We therefore push
for diverse code usage through what the first level quantises: the uniformity loss of Wang & Isola
(2020) on the unit-normalised encoder outputs z of the batch,

    L_div = log mean_{i < j} exp(-t ||u_i - u_j||^2),   u = z / ||z||

Spread-out latents spread the nearest-code assignments over the codebooks. The value is <= 0
(lower = more uniform); cost B^2 d. Two alternatives we measured and rejected (docs/regularizers.md):
the same loss on every level's residual (collapsed the codebooks on Beauty) and pushing the batch's
soft code usage toward uniform (more collisions on Beauty).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from genrec.tokenizer.base import Regularizer, RegularizerBatch
from genrec.tokenizer.regularizers.repulsion import term_weight
from genrec.tokenizer.regularizers.stats import EpochStats


def uniformity(x: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """Wang & Isola uniformity of (n, d) vectors after unit normalisation (scalar; needs n >= 2)."""
    unit = torch.nn.functional.normalize(x, dim=1, eps=1e-12)
    return torch.pdist(unit).pow(2).mul(-t).exp().mean().log()


class CodeDiversity(Regularizer):
    """Uniformity of the batch's encoder outputs on the unit sphere.

    Args:
        weight: a constant or a function of progress t.
        t: uniformity temperature (Wang & Isola use 2).
        name: loss-term name.
    ``self.stats`` (reset each epoch) averages ``<name>/raw`` (unweighted L_div) and ``<name>/weight``.
    """

    def __init__(self, weight: float | Callable[[float], float] = 0.01, t: float = 2.0, name: str = "div"):
        super().__init__()
        if t <= 0:
            raise ValueError(f"uniformity temperature t must be > 0, got {t}")
        self.weight, self.t, self.name = weight, float(t), name
        self.stats = EpochStats()

    def on_epoch_start(self, epoch: int, progress: float, catalogue_codes: torch.Tensor) -> None:
        self.stats.reset()

    def forward(self, batch: RegularizerBatch) -> dict[str, torch.Tensor]:
        z = batch.out.z
        raw = uniformity(z, self.t) if z.shape[0] >= 2 else z.sum() * 0.0
        lam = term_weight(self.weight, batch.progress)
        self.stats.mean(f"{self.name}/raw", float(raw.detach()))
        self.stats.mean(f"{self.name}/weight", lam)
        return {self.name: lam * raw}
