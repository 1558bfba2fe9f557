"""Quantisers from a config's fields, and the training settings their ``fit`` takes.

What a config-driven caller (``recipes/train_tokenizer.py``) needs, read from the interface every
quantiser declares (:class:`~genrec.tokenizer.base.Quantizer`: ``trainable``, ``takes_input_dim``,
``learns_fusion``, ``options``), never from signatures. Setting errors are
:class:`~genrec.tokenizer.base.TokenizerConfigError` with the config section first in the message.
"""

from __future__ import annotations

import torch

from genrec.tokenizer.base import FIXED_ARGUMENTS, TokenizerConfigError
from genrec.tokenizer.fusion import FusedQuantizer, SourceLayout
from genrec.tokenizer.registry import quantizer_class


def build_quantizer_from_fields(method: str, codebook_sizes, seed: int, options: dict, input_dim: int,
                                fusion: dict | None = None):
    """The quantiser registered as ``method``, from a config's top-level fields and its ``options``.

    Args:
        method: registered name (``random``, ``rq_kmeans``, ``rq_vae``, ...); an unknown name raises
            a plain ``ValueError`` from the registry.
        codebook_sizes: K per level (dedup level excluded).
        seed: the quantiser's seed.
        options: further constructor arguments (the config's ``quantizer`` section); each must be
            one of the class's declared ``options``.
        input_dim: width of the rows the quantiser will read: the embedding dimension, or the packed
            width (sources + presence flags) with ``fusion``.
        fusion: a fusion config (:func:`~genrec.tokenizer.fusion.fusion_config`) or None. A quantiser
            that learns a fusion (``learns_fusion``, RQ-VAE) gets it; any other is wrapped in a
            :class:`~genrec.tokenizer.fusion.FusedQuantizer` that applies the fixed concatenation in
            front (then only ``type: concat`` without learned placeholders is possible).

    Raises:
        TokenizerConfigError: ``quantizer: ...`` for misplaced or unknown options, ``fusion: ...`` for a
            fusion the method cannot use, or any constructor error when a fusion is given.
    """
    cls = quantizer_class(method)
    clashes = sorted(set(options) & set(FIXED_ARGUMENTS))
    if clashes:
        raise TokenizerConfigError(f"quantizer: {clashes} are set at the top level of the config (input_dim from the embeddings), "
                                   "not under quantizer")
    unknown = sorted(set(options) - set(cls.options))
    if unknown:
        raise TokenizerConfigError(f"quantizer: unknown argument(s) {unknown} for method '{method}'; valid: {list(cls.options)}")
    wrap = fusion is not None and not cls.learns_fusion
    if wrap:
        if fusion.get("type", "concat") != "concat" or fusion.get("learned_placeholder", False):
            raise TokenizerConfigError(f"fusion: method '{method}' cannot learn a fusion; use fusion.type=concat (its placeholders are "
                                       "then the catalogue mean of the present rows, not learned)")
        fusion = {**fusion, "learned_placeholder": False}
        input_dim = SourceLayout.from_config(fusion["sources"]).source_dim  # the inner quantiser reads the fused vectors
    try:
        quantizer = cls.from_options(codebook_sizes=codebook_sizes, seed=seed, input_dim=input_dim,
                                     fusion=None if wrap else fusion, **options)
        return FusedQuantizer(fusion, quantizer) if wrap else quantizer
    except ValueError as err:
        if fusion is None:
            raise
        raise TokenizerConfigError(f"fusion: {err}") from None


def training_arguments(quantizer, *, epochs: int, batch_size: int, lr: float, weight_decay: float, device: str | None,
                       log_every: int, show_progress: bool = True) -> dict:
    """The keyword arguments for ``quantizer.fit``: every training setting for a trainable quantiser, none otherwise.

    ``device`` None picks ``"cuda"`` when available, else ``"cpu"``.
    """
    if not quantizer.trainable:
        return {}
    return {"epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
            "device": device or ("cuda" if torch.cuda.is_available() else "cpu"), "log_every": log_every, "show_progress": show_progress}


__all__ = ["build_quantizer_from_fields", "training_arguments"]
