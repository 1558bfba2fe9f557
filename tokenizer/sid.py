"""The dedup code and the item <-> SID table.

TIGER appends one code to the L quantiser codes: items sharing all L codes are numbered 0, 1, 2, ...
(in catalogue order), so every item gets a unique SID. The table is the contract between a
tokenizer and the models trained on it: it is saved, never recomputed.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

TABLE_FILE = "sid_table.safetensors"
ITEMS_FILE = "sid_items.json"


def add_dedup_codes(codes: torch.Tensor) -> torch.Tensor:
    """(N, L) codes -> (N, L+1): the last column numbers items sharing the same L codes, in row order."""
    if codes.ndim != 2:
        raise ValueError(f"codes must be (N, L), got shape {tuple(codes.shape)}")
    n = codes.shape[0]
    if n == 0:
        return torch.zeros(0, codes.shape[1] + 1, dtype=torch.long)
    _, group = torch.unique(codes, dim=0, return_inverse=True)
    order = torch.argsort(group * n + torch.arange(n), stable=True)  # by group, then by row
    sorted_group = group[order]
    starts = torch.ones(n, dtype=torch.bool)
    starts[1:] = sorted_group[1:] != sorted_group[:-1]
    start_pos = torch.cummax(torch.where(starts, torch.arange(n), torch.zeros(n, dtype=torch.long)), dim=0).values
    dedup = torch.empty(n, dtype=torch.long)
    dedup[order] = torch.arange(n) - start_pos
    return torch.cat([codes.long(), dedup[:, None]], dim=1)


class SIDTable:
    """Item ids <-> full SIDs (quantiser codes + dedup code).

    Args:
        item_ids: N item ids in catalogue order.
        sids: (N, D) long, unique rows.
        codebook_sizes: size of every level, the dedup level included (default: quantiser sizes
            unknown -> each level's max code + 1).
    """

    def __init__(self, item_ids: list[str], sids: torch.Tensor, codebook_sizes=None):
        sids = torch.as_tensor(sids, dtype=torch.long)
        if sids.ndim != 2 or len(item_ids) != sids.shape[0]:
            raise ValueError(f"SID table: {len(item_ids)} item ids but sids of shape {tuple(sids.shape)}")
        if len(set(item_ids)) != len(item_ids):
            seen, dups = set(), []
            for i in item_ids:
                (dups.append(i) if i in seen else seen.add(i))
            raise ValueError(f"SID table: duplicate item ids, e.g. {dups[:5]}")
        if codebook_sizes is None:
            codebook_sizes = (sids.amax(dim=0) + 1).tolist() if len(sids) else [1] * sids.shape[1]
        self.codebook_sizes = tuple(int(k) for k in codebook_sizes)
        if len(self.codebook_sizes) != sids.shape[1]:
            raise ValueError(f"SID table: {sids.shape[1]} levels but {len(self.codebook_sizes)} codebook sizes")
        if len(sids) and ((sids < 0).any() or (sids >= torch.tensor(self.codebook_sizes)).any()):
            level = int(((sids < 0) | (sids >= torch.tensor(self.codebook_sizes))).any(dim=0).nonzero()[0])
            raise ValueError(f"SID table: codes out of range at level {level} (size {self.codebook_sizes[level]})")
        uniq, inverse, counts = torch.unique(sids, dim=0, return_inverse=True, return_counts=True)
        if len(uniq) != len(sids):
            group = int(torch.nonzero(counts > 1)[0])
            clash = [item_ids[i] for i in torch.nonzero(inverse == group).flatten().tolist()]
            raise ValueError(f"SID table: {len(sids) - len(uniq)} duplicate SID(s); e.g. items {clash[:5]} share SID {uniq[group].tolist()}")
        self.item_ids = list(item_ids)
        self.sids = sids
        self._row = {item: i for i, item in enumerate(self.item_ids)}
        self._by_sid = {tuple(s): i for i, s in enumerate(sids.tolist())}

    @classmethod
    def from_codes(cls, item_ids: list[str], codes: torch.Tensor, codebook_sizes) -> SIDTable:
        """Build from quantiser codes (N, L) + their sizes; adds the dedup level (size = largest group)."""
        sids = add_dedup_codes(codes)
        dedup_size = int(sids[:, -1].max()) + 1 if len(sids) else 1
        return cls(item_ids, sids, tuple(codebook_sizes) + (dedup_size,))

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def depth(self) -> int:
        return self.sids.shape[1]

    def sid(self, item_id: str) -> tuple[int, ...]:
        if item_id not in self._row:
            raise KeyError(f"unknown item id {item_id!r}")
        return tuple(self.sids[self._row[item_id]].tolist())

    def item(self, sid) -> str:
        key = tuple(int(c) for c in sid)
        if key not in self._by_sid:
            raise KeyError(f"no item has SID {key}")
        return self.item_ids[self._by_sid[key]]

    def index(self, item_id: str) -> int:
        return self._row[item_id]

    def save(self, directory: str | Path) -> None:
        from genrec.tokenizer.io import atomic_save_json, atomic_save_safetensors

        directory = Path(directory)
        atomic_save_safetensors({"sids": self.sids.contiguous()}, directory / TABLE_FILE)
        atomic_save_json({"item_ids": self.item_ids, "codebook_sizes": list(self.codebook_sizes)}, directory / ITEMS_FILE)

    @classmethod
    def load(cls, directory: str | Path) -> SIDTable:
        directory = Path(directory)
        for f in (TABLE_FILE, ITEMS_FILE):
            if not (directory / f).is_file():
                raise FileNotFoundError(f"SID table: missing file {directory / f}")
        meta = json.loads((directory / ITEMS_FILE).read_text())
        sids = load_file(directory / TABLE_FILE)["sids"]
        try:
            return cls(meta["item_ids"], sids, meta["codebook_sizes"])
        except ValueError as e:
            raise ValueError(f"{directory}: {e}") from e


__all__ = ["SIDTable", "add_dedup_codes"]
