"""The dedup code, the item <-> SID table, and quantisers by name.

TIGER appends one code to the L quantiser codes: items sharing all L codes are numbered 0, 1, 2, ...
in catalogue order, so every item gets a unique SID. The table is the contract between a tokenizer
and the models trained on it: it is saved (``sid_table.safetensors`` with ``sids`` (N, L+1) int64, and
``sid_items.json`` with the item ids and level sizes; each written atomically), never recomputed.

Quantisers are built by name with :func:`build_tokenizer`; ``@register_quantizer(name)`` adds one
(the registry itself lives in :mod:`genrec.tokenizer.registry`). A fitted quantiser is saved with its
table as a :class:`genrec.tokenizer.artifact.SIDTokenizer`; every quantiser offers ``get_config()`` /
``from_config()`` (JSON) and ``state_dict()`` / ``load_state_dict()`` (tensors, safetensors-ready).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from genrec.tokenizer.base import Quantizer
from genrec.tokenizer.io import atomic_save_json, atomic_save_safetensors
from genrec.tokenizer.registry import build_quantizer, register_quantizer

TABLE_FILE = "sid_table.safetensors"
ITEMS_FILE = "sid_items.json"
QUANTIZER_WEIGHTS_FILE = "quantizer.safetensors"
QUANTIZER_CONFIG_FILE = "quantizer_config.json"


def build_tokenizer(method: str, **kwargs) -> Quantizer:
    """The quantiser registered as ``method`` ("random", "rq_kmeans", "rq_vae", or any name added
    with ``@register_quantizer(name)``), constructed with ``kwargs``."""
    return build_quantizer(method, **kwargs)


def add_dedup_codes(codes: torch.Tensor) -> torch.Tensor:
    """(N, L) codes -> (N, L+1) long: the last column numbers the items sharing the same L codes
    0, 1, 2, ... in row (catalogue) order; items with a unique code tuple get 0."""
    codes = torch.as_tensor(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be (N, L), got shape {tuple(codes.shape)}")
    codes = codes.long().cpu()
    n = codes.shape[0]
    if n == 0:
        return torch.zeros(0, codes.shape[1] + 1, dtype=torch.long)
    _, group = torch.unique(codes, dim=0, return_inverse=True)
    order = torch.argsort(group, stable=True)  # rows by group; a stable sort keeps catalogue order inside a group
    counts = torch.bincount(group)
    first_position = torch.cumsum(counts, 0) - counts  # where each group starts in `order`
    dedup = torch.empty(n, dtype=torch.long)
    dedup[order] = torch.arange(n) - first_position[group[order]]
    return torch.cat([codes, dedup[:, None]], dim=1)


class SIDTable:
    """Item ids <-> full SIDs (quantiser codes + dedup code).

    Args:
        item_ids: N distinct item ids (strings) in catalogue order; row i is item index i.
        sids: (N, D) integer codes, all rows distinct.
        codebook_sizes: D sizes, the dedup level included; every code must lie in [0, size).
            None = each level's largest code + 1.
    """

    def __init__(self, item_ids: list[str], sids: torch.Tensor, codebook_sizes=None):
        sids = torch.as_tensor(sids).long().cpu()
        item_ids = list(item_ids)
        if sids.ndim != 2 or len(item_ids) != sids.shape[0]:
            raise ValueError(f"SID table: {len(item_ids)} item ids but sids of shape {tuple(sids.shape)}; expected ({len(item_ids)}, D)")
        not_str = [i for i, item in enumerate(item_ids) if not isinstance(item, str)]
        if not_str:
            raise TypeError(f"SID table: item ids must be strings; row {not_str[0]} is {item_ids[not_str[0]]!r} ({len(not_str)} non-string(s))")
        if len(set(item_ids)) != len(item_ids):
            seen: set[str] = set()
            repeated = [item for item in item_ids if item in seen or seen.add(item)]
            raise ValueError(f"SID table: {len(repeated)} repeated item id(s), e.g. {repeated[:5]}")
        if codebook_sizes is None:
            codebook_sizes = (sids.amax(dim=0) + 1).tolist() if len(sids) else [1] * sids.shape[1]
        self.codebook_sizes = tuple(int(k) for k in codebook_sizes)
        if len(self.codebook_sizes) != sids.shape[1]:
            raise ValueError(f"SID table: SIDs have {sids.shape[1]} levels but {len(self.codebook_sizes)} codebook sizes were given")
        out_of_range = (sids < 0) | (sids >= torch.tensor(self.codebook_sizes))
        if out_of_range.any():
            row, level = (int(v) for v in torch.nonzero(out_of_range)[0])
            raise ValueError(f"SID table: codes out of range at level {level} (size {self.codebook_sizes[level]}): item "
                             f"{item_ids[row]!r} has code {int(sids[row, level])} ({int(out_of_range.any(dim=1).sum())} item(s) affected)")
        unique, inverse, counts = torch.unique(sids, dim=0, return_inverse=True, return_counts=True)
        if len(unique) != len(sids):
            group = int(torch.nonzero(counts > 1)[0])
            clash = [item_ids[i] for i in torch.nonzero(inverse == group).flatten().tolist()]
            raise ValueError(f"SID table: {len(sids) - len(unique)} duplicate SID(s); e.g. items {clash[:5]} share SID "
                             f"{unique[group].tolist()} (add the dedup code with add_dedup_codes / SIDTable.from_codes)")
        self.item_ids = item_ids
        self.sids = sids
        self._row_of_item = {item: i for i, item in enumerate(item_ids)}
        self._row_of_sid = {tuple(s): i for i, s in enumerate(sids.tolist())}

    @classmethod
    def from_codes(cls, item_ids: list[str], codes: torch.Tensor, codebook_sizes) -> SIDTable:
        """From quantiser codes (N, L) and their L sizes: adds the dedup level, whose size is the
        largest group of items sharing all L codes (1 when there is no collision)."""
        sids = add_dedup_codes(codes)
        dedup_size = int(sids[:, -1].max()) + 1 if len(sids) else 1
        return cls(item_ids, sids, (*(int(k) for k in codebook_sizes), dedup_size))

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def depth(self) -> int:
        """D, SID length including the dedup code."""
        return self.sids.shape[1]

    def index(self, item_id: str) -> int:
        """Catalogue row of ``item_id``."""
        if item_id not in self._row_of_item:
            raise KeyError(f"unknown item id {item_id!r}")
        return self._row_of_item[item_id]

    def sid(self, item_id: str) -> tuple[int, ...]:
        """The D codes of ``item_id``."""
        return tuple(self.sids[self.index(item_id)].tolist())

    def item_index(self, sid) -> int:
        """Catalogue row of the item with this SID (D codes)."""
        key = tuple(int(c) for c in sid)
        if key not in self._row_of_sid:
            raise KeyError(f"no item has SID {key}")
        return self._row_of_sid[key]

    def item(self, sid) -> str:
        """Item id with this SID (D codes)."""
        return self.item_ids[self.item_index(sid)]

    def save(self, directory: str | Path) -> None:
        """Write ``sid_table.safetensors`` and ``sid_items.json`` into ``directory`` (created if needed)."""
        directory = Path(directory)
        atomic_save_safetensors({"sids": self.sids}, directory / TABLE_FILE)
        atomic_save_json({"item_ids": self.item_ids, "codebook_sizes": list(self.codebook_sizes)}, directory / ITEMS_FILE)

    @classmethod
    def load(cls, directory: str | Path) -> SIDTable:
        directory = Path(directory)
        for name in (TABLE_FILE, ITEMS_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"SID table: missing file {directory / name}")
        meta = json.loads((directory / ITEMS_FILE).read_text())
        missing = [key for key in ("item_ids", "codebook_sizes") if key not in meta]
        if missing:
            raise ValueError(f"{directory / ITEMS_FILE}: missing key(s) {missing}")
        sids = load_file(directory / TABLE_FILE)["sids"]
        try:
            return cls(meta["item_ids"], sids, meta["codebook_sizes"])
        except (ValueError, TypeError) as e:
            raise ValueError(f"{directory}: {e}") from e


__all__ = ["SIDTable", "add_dedup_codes", "build_tokenizer", "register_quantizer"]
