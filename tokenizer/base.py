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
from typing import ClassVar

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


# The training settings a trainable quantiser's ``fit`` takes as keywords (see :meth:`Quantizer.fit`).
TRAINING_ARGUMENTS = ("epochs", "batch_size", "lr", "weight_decay", "device", "log_every", "show_progress")

# Constructor arguments a config sets at its top level (``input_dim`` comes from the embeddings,
# ``fusion`` from the features section), never among a quantiser's ``options``.
FIXED_ARGUMENTS = ("codebook_sizes", "seed", "input_dim", "fusion")


class TokenizerConfigError(ValueError):
    """A tokenizer setting that does not fit the chosen quantiser; the message starts with the config
    section it concerns (``quantizer: ...``, ``fusion: ...``, ``regularizers: ...``)."""


class Quantizer(ABC):
    """Maps item embeddings to per-level codes.

    ``fit`` learns from the catalogue (may be a no-op); ``encode`` is deterministic and runs in
    batches with bounded memory. ``codebook_sizes`` has one entry per level (dedup excluded).

    Every registered quantiser declares, as class attributes, what a config-driven builder (the
    tokenizer recipe, :func:`genrec.tokenizer.factory.build_quantizer_from_fields`) needs to know,
    instead of that builder reading signatures:

    - ``trainable``: ``fit`` trains by gradient descent, so it takes the :data:`TRAINING_ARGUMENTS`
      keywords and regularisers. An untrained quantiser's ``fit(x)`` takes neither.
    - ``takes_input_dim``: the constructor needs ``input_dim`` (d_in of the embeddings).
    - ``learns_fusion``: the constructor takes ``fusion=`` (a fusion config, multimodal input) and
      learns it; other quantisers get a fixed fusion in front (:class:`~genrec.tokenizer.fusion.FusedQuantizer`).
    - ``options``: the other constructor arguments a config may set (``quantizer:`` section), in
      signature order; ``codebook_sizes`` and ``seed`` (always taken) are not among them.

    The defaults describe an untrained quantiser built from ``codebook_sizes`` and ``seed`` only.
    """

    method: ClassVar[str]  # the registered name (set by @register_quantizer)
    trainable: ClassVar[bool] = False
    takes_input_dim: ClassVar[bool] = False
    learns_fusion: ClassVar[bool] = False
    options: ClassVar[tuple[str, ...]] = ()

    codebook_sizes: tuple[int, ...]

    @classmethod
    def from_options(cls, *, codebook_sizes, seed: int, input_dim: int | None = None, fusion: dict | None = None,
                     **options) -> Quantizer:
        """Build from a config's fields: ``codebook_sizes`` and ``seed``, ``input_dim`` when the class
        takes it (else ignored), ``fusion`` (only for a class that learns one) and its ``options``.

        Raises ``ValueError`` for an option the class does not declare or a fusion it cannot learn.
        """
        unknown = sorted(set(options) - set(cls.options))
        if unknown:
            raise ValueError(f"unknown argument(s) {unknown} for method '{cls.method}'; valid: {list(cls.options)}")
        kwargs = {"codebook_sizes": list(codebook_sizes), "seed": seed}
        if cls.takes_input_dim:
            kwargs["input_dim"] = input_dim
        if fusion is not None:
            if not cls.learns_fusion:
                raise ValueError(f"method '{cls.method}' cannot learn a fusion")
            kwargs["fusion"] = fusion
        return cls(**kwargs, **options)

    @abstractmethod
    def fit(self, x: torch.Tensor, regularizers: list[Regularizer] | None = None, **kwargs) -> dict:
        """Train on x (N, d_in). Returns a history dict of per-epoch logged values.

        A trainable quantiser (``trainable = True``) accepts at least ``regularizers`` and the
        :data:`TRAINING_ARGUMENTS` as keywords: ``epochs`` (int), ``batch_size`` (items per step),
        ``lr``, ``weight_decay`` (AdamW), ``device`` (str or torch.device), ``log_every`` (epochs
        between log lines, 0 = never) and ``show_progress`` (bool). An untrained one is called as
        ``fit(x)`` and must refuse regularisers.
        """

    @abstractmethod
    def encode(self, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
        """(N, d_in) float -> (N, L) long codes."""
