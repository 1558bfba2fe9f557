"""A tokenizer's regularisers with their dataset-derived inputs (collaborative embeddings, item groups).

``genrec.tokenizer.regularizers.build_regularizers`` works on tensors; this module gets those tensors
from a dataset: collaborative (CF) embeddings trained on the *training* part of the leave-one-out split
(validation and test targets never seen; cached, see :func:`genrec.tokenizer.train_cf_embeddings`) and
the ``group`` mask's item groups from an item-table column. Under the cold-start protocol both are cut
to the warm items, as the quantiser's input is.

Errors in the settings are :class:`~genrec.config.ConfigError` naming the config section.
"""

from __future__ import annotations

import numpy as np
import torch

from genrec.config import ConfigError
from genrec.data.split import leave_one_out_split
from genrec.tokenizer.collaborative import CFEmbeddings, train_cf_embeddings
from genrec.tokenizer.regularizers import build_regularizers
from genrec.tokenizer.regularizers.factory import resolve_config


def build_tokenizer_regularizers(spec: str | dict | None, dataset, x: torch.Tensor, quantizer, *, seed: int, cf: dict | None = None,
                                 max_history: int = 20, group_column: str | None = None, cold: np.ndarray | None = None,
                                 content: torch.Tensor | None = None) -> tuple[list, dict]:
    """The regularisers of ``spec`` and a JSON-able record of what was built (for the artifact).

    Args:
        spec: None / ``"none"`` (no regulariser), a preset name (``quasid``, ``adasid``, ``letter``, ...)
            or a mapping of sections (docs/regularizers.md).
        dataset: the :class:`~genrec.data.Dataset` (item table and interactions).
        x: (N_fit, d) the rows the quantiser trains on: the whole catalogue, or its warm rows when ``cold``
            (an (N,) bool mask over the catalogue) holds items out; per-item inputs are cut to match.
        quantizer: the quantiser to regularise; it must be ``trainable``. Its ``latent_dim`` (if any)
            sizes the contrastive item tower.
        seed: default seed of the CF embeddings.
        cf: ``train_cf_embeddings`` arguments (method, dim, epochs, seed, ...), used when a term needs
            collaborative embeddings (``contrastive``, or a gate with ``cf_mix`` > 0).
        max_history: history cut of the leave-one-out split the CF embeddings train on (the recommender's).
        group_column: item-table column whose values are the ``group`` mask's groups.
        content: (N_fit, d_c) what masks and the gate compare; None = ``x``.

    Returns:
        ``(regularizers, record)``; ``([], {})`` without regularisers.
    """
    warm = None if cold is None else torch.from_numpy(~cold)
    if spec in (None, "none"):
        return [], {}
    if not quantizer.trainable:
        method = getattr(quantizer, "inner", quantizer).method  # the configured method, also behind a fixed fusion
        raise ConfigError(f"regularizers: method '{method}' is not trained, so it takes no regularisers")
    try:
        resolved = resolve_config(spec)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"regularizers: {err}") from None
    record = {"preset": spec if isinstance(spec, str) else None,
              "sections": {name: section for name, section in resolved.items() if section["enabled"]}}
    cf_embeddings = None
    if resolved["contrastive"]["enabled"] or resolved["gate"]["cf_mix"] > 0:
        split = leave_one_out_split(dataset, max_history=max_history, cold_items=cold)
        cf_args = {"seed": seed, **(cf or {})}
        try:
            cf_embeddings = train_cf_embeddings(split.train_item_sequences(), num_items=len(dataset.item_ids), **cf_args)
        except TypeError as err:
            raise ConfigError(f"cf: {err}") from None
        if warm is not None:
            cf_embeddings = CFEmbeddings(embeddings=cf_embeddings.embeddings[warm], covered=cf_embeddings.covered[warm],
                                         method=cf_embeddings.method, cache_path=cf_embeddings.cache_path,
                                         from_cache=cf_embeddings.from_cache)
        record["cf"] = {"source": "training split (leave-one-out; validation and test targets excluded)", **cf_args,
                        "method": cf_embeddings.method, "dim": int(cf_embeddings.embeddings.shape[1]),
                        "uncovered_items": cf_embeddings.num_uncovered}
    groups = None
    if group_column is not None:
        if group_column not in dataset.items.columns:
            raise ConfigError(f"group_column: the item table has no column '{group_column}'; columns: {list(dataset.items.columns)}")
        groups = dataset.items[group_column].tolist()
        if warm is not None:
            groups = [g for g, keep in zip(groups, warm.tolist(), strict=True) if keep]
        record["group_column"] = group_column
    try:
        regs = build_regularizers(spec, content=x if content is None else content, cf_embeddings=cf_embeddings, groups=groups,
                                  latent_dim=getattr(quantizer, "latent_dim", None), num_items=len(x))
    except ValueError as err:
        raise ConfigError(f"regularizers: {err}") from None
    return regs, record


__all__ = ["build_tokenizer_regularizers"]
