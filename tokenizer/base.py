"""Interfaces of the SID tokenizer: quantisers, regularisers, and what flows between them.

A *quantiser* maps item content embeddings ``x`` (N, d_in) to per-level codes (N, L). A
*regulariser* adds loss terms during a trainable quantiser's training; it sees only tensors
(:class:`QuantizerOutput` plus the batch's item indices and raw inputs), never the quantiser
itself, so any regulariser plugs into any trainable quantiser by configuration (GRID-style).
The dedup code and the item<->SID table live in :mod:`genrec.tokenizer.sid`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch


@dataclass
class QuantizerOutput:
    """One forward pass of a trainable quantiser on a batch of B items.

    Attributes:
        z: (B, d) encoder outputs (continuous latents; gradients flow through these).
        zq: (B, d) quantised latents with the straight-through estimator applied.
        codes: (B, L) long, the hard code of each level (no gradient).
        x_hat: (B, d_in) reconstruction (None for quantisers without a decoder).
        residuals: list of L tensors (B, d): the residual entering each level.
        losses: named base loss terms, already weighted (e.g. ``recon``, ``commit``).
    """

    z: torch.Tensor
    zq: torch.Tensor
    codes: torch.Tensor
    x_hat: torch.Tensor | None = None
    residuals: list[torch.Tensor] = field(default_factory=list)
    losses: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class RegularizerBatch:
    """What a regulariser sees for one training batch.

    Attributes:
        item_index: (B,) long, row of each batch item in the catalogue (0..N-1).
        x: (B, d_in) content embeddings as fed to the quantiser (standardised).
        out: the quantiser's :class:`QuantizerOutput` for this batch.
        progress: training progress t in [0, 1] (epoch-based, see the training loop).
        epoch: current epoch (0-based).
    """

    item_index: torch.Tensor
    x: torch.Tensor
    out: QuantizerOutput
    progress: float
    epoch: int


class Regularizer(torch.nn.Module):
    """A loss term (or several) added to a trainable quantiser's objective.

    Subclasses return named, already-weighted loss terms; the training loop sums them and logs
    each term's value per epoch. ``on_epoch_start`` receives the codes of the *whole catalogue*
    (N, L) so catalogue-level statistics (collision load histograms) can be refreshed. Being an
    ``nn.Module``, a regulariser may own trainable parameters (e.g. contrastive projection heads),
    which the loop optimises together with the quantiser.
    """

    def on_epoch_start(self, epoch: int, progress: float, catalogue_codes: torch.Tensor) -> None:  # noqa: B027
        """Refresh catalogue-level state. Default: nothing."""

    @abstractmethod
    def forward(self, batch: RegularizerBatch) -> dict[str, torch.Tensor]:
        """Return {term name: scalar loss tensor (already weighted)}."""


class Quantizer(ABC):
    """Maps item embeddings to per-level codes.

    ``fit`` learns from the catalogue (may be a no-op); ``encode`` is deterministic and runs in
    batches with bounded memory. ``codebook_sizes`` has one entry per level (dedup excluded).
    """

    codebook_sizes: tuple[int, ...]

    @abstractmethod
    def fit(self, x: torch.Tensor, regularizers: list[Regularizer] | None = None, **kwargs) -> dict:
        """Train on x (N, d_in). Returns a history dict of per-epoch logged values."""

    @abstractmethod
    def encode(self, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
        """(N, d_in) float -> (N, L) long codes."""
