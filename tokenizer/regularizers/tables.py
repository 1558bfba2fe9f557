"""Per-item tables the regularisers look rows up in (content embeddings, CF embeddings), checked once."""

from __future__ import annotations

import torch


def check_item_table(table: torch.Tensor, what: str, num_items: int | None = None) -> torch.Tensor:
    """Return ``table`` as float32 after checking it is a finite (N, d) matrix with N == ``num_items`` (when given)."""
    if not isinstance(table, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor (N, d), got {type(table).__name__}")
    if table.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (N, d) tensor, got shape {tuple(table.shape)}")
    if num_items is not None and table.shape[0] != num_items:
        raise ValueError(f"{what} has {table.shape[0]} rows but the catalogue has {num_items} items")
    table = table.detach().float()
    bad = ~torch.isfinite(table).all(dim=1)
    if bad.any():
        rows = torch.nonzero(bad).flatten()
        raise ValueError(f"{what}: NaN/inf in {len(rows)} row(s) (items {rows[:10].tolist()}{' ...' if len(rows) > 10 else ''})")
    return table


def check_item_index(item_index: torch.Tensor, num_items: int, what: str) -> None:
    """Raise unless every batch item index is a row of a table of ``num_items`` rows."""
    bad = (item_index < 0) | (item_index >= num_items)
    if bad.any():
        ids = item_index[bad].unique()
        raise ValueError(f"{what} has {num_items} rows; batch item indices {ids[:10].tolist()} are outside 0..{num_items - 1}")


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    return torch.nn.functional.normalize(x, dim=1, eps=1e-12)


def pair_cosine(unit: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """(P,) cosine of rows ``left`` and ``right`` of a unit-row matrix.

    ``index_select`` rather than ``unit[left]``: rows repeat across pairs, and the CPU backward of
    advanced indexing accumulates repeated rows in a thread-dependent order (fits were not reproducible).
    """
    return (unit.index_select(0, left) * unit.index_select(0, right)).sum(dim=1)


class ContentSource(torch.nn.Module):
    """Content embeddings of batch items: rows of a fixed (N, d) table when given, else the batch's ``x``.

    A table makes compatibility independent of what the quantiser feeds as ``x`` (raw or standardised);
    without one, ``batch.x`` is checked for NaN/inf on every call.
    """

    def __init__(self, content: torch.Tensor | None = None, num_items: int | None = None, what: str = "content embeddings"):
        super().__init__()
        self.what = what
        unit = unit_rows(check_item_table(content, what, num_items)) if content is not None else None
        self.register_buffer("unit", unit, persistent=False)

    def unit_rows(self, batch) -> torch.Tensor:
        """(B, d) unit-norm content embeddings of the batch items."""
        if self.unit is not None:
            check_item_index(batch.item_index, self.unit.shape[0], self.what)
            return self.unit[batch.item_index]
        return unit_rows(check_item_table(batch.x, f"batch content embeddings (batch.x) for {self.what}"))
