"""The training set resident on the accelerator: batches gathered by index, no per-batch Python collation.

On a GPU the model is tiny (TIGER's T5: 4.6M parameters) and a step takes milliseconds, so building every
batch in Python (Arrow rows -> lists -> padded tensors -> a host-to-device copy) costs as much as the step
itself. :class:`ResidentBatches` runs the run's own collator once over every training row, keeps the padded
tensors on the device, and makes a batch by gathering rows by index and cutting each padded field to the
widest row of the batch: the very tensors the collator builds for those rows (checked on a sample batch when
it is built, and in ``tests/test_resident.py``), so training computes the same thing.

``pad_to_multiple_of`` rounds every cut width up to a multiple of that many *units* (a field's unit is the
greatest common divisor of its rows' widths: one token for ``input_ids``, a target's ``D`` tokens for the
every-target ``labels``, so ``labels`` and ``target_starts`` stay consistent). A batch then carries a few more
padding columns, which the models mask, and the number of distinct batch shapes stays small: what
``torch.compile`` and CUDA graphs need to pay off.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

# Collated fields that are not columns of the rows but follow the width of ``input_ids`` (their mask and positions).
_FOLLOWS_INPUT_IDS = ("attention_mask", "position_ids")
_CHECK_ROWS = 64  # rows collated both ways when built, as a guard against a collator this cannot reproduce


class ResidentBatches(Dataset):
    """Every training row collated once into padded tensors on ``device``; a batch is a gather + a cut.

    Use it as the dataset of a ``DataLoader`` with a batch sampler and ``collate_fn=resident.collate``:
    :meth:`__getitems__` hands the sampler's indices straight to :meth:`collate`.

    Args:
        rows: the training rows (a ``datasets.Dataset`` or a list of dicts with list / int columns).
        collator: the run's training collator (right-padding), called once on all rows.
        device: where the tensors live (``accelerator.device``).
        pad_to_multiple_of: round cut widths up to a multiple of this many units (None: the exact widths).
    """

    def __init__(self, rows, collator, device: torch.device | str = "cpu", pad_to_multiple_of: int | None = None):
        if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of must be >= 1 or None, got {pad_to_multiple_of!r}")
        if getattr(collator, "padding_side", "right") != "right":
            raise ValueError(f"resident batches need a right-padding collator, got padding_side={collator.padding_side!r}")
        row_list = rows.to_list() if hasattr(rows, "to_list") else list(rows)
        if not row_list:
            raise ValueError("resident batches need at least one training row")
        self.device = torch.device(device)
        self.pad_to_multiple_of = pad_to_multiple_of
        full = collator(row_list)
        list_columns = [k for k, v in row_list[0].items() if isinstance(v, list | tuple)]
        widths = {k: np.array([len(r[k]) for r in row_list], dtype=np.int64) for k in list_columns}
        # For every padded (2-D) field: the row widths it is padded to, and its width unit.
        self.widths: dict[str, np.ndarray] = {}
        self.units: dict[str, int] = {}
        for name, tensor in full.items():
            if tensor.ndim != 2:
                continue
            source = name if name in widths else "input_ids" if name in _FOLLOWS_INPUT_IDS else None
            if source is None or source not in widths or tensor.shape[1] != widths[source].max():
                raise ValueError(f"resident batches: the collated field {name!r} ({tuple(tensor.shape)}) does not follow the "
                                 f"width of a row column; train without training.resident_batches")
            self.widths[name] = widths[source]
            self.units[name] = max(1, int(np.gcd.reduce(widths[source]))) if widths[source].any() else 1
        self.tensors = {name: tensor.to(self.device) for name, tensor in full.items()}
        self.num_rows = len(row_list)
        sample = list(range(min(_CHECK_ROWS, self.num_rows)))[::-1]
        expected, got = collator([row_list[i] for i in sample]), self.collate(sample, exact=True)
        if expected.keys() != got.keys() or any(not torch.equal(expected[k], got[k].cpu()) for k in expected):
            raise ValueError("resident batches: gathering from the collated rows does not give what the collator builds for "
                             "a batch; train without training.resident_batches")

    def __len__(self) -> int:
        return self.num_rows

    def __getitem__(self, index: int) -> int:
        return index

    def __getitems__(self, indices: list[int]) -> list[int]:
        return indices

    def width(self, name: str, indices: np.ndarray, exact: bool = False) -> int:
        """The padded width of field ``name`` for a batch of rows ``indices``: its widest row, rounded up."""
        widest = int(self.widths[name][indices].max())
        if exact or self.pad_to_multiple_of is None:
            return widest
        step = self.units[name] * self.pad_to_multiple_of
        return min(math.ceil(widest / step) * step, self.tensors[name].shape[1])

    def collate(self, indices, exact: bool = False) -> dict[str, torch.Tensor]:
        """The batch of rows ``indices`` (a list of row numbers), on the device. The widths are read from
        host-side arrays, so a batch costs one small index copy and no device synchronisation."""
        rows = np.asarray(indices, dtype=np.int64)
        index = torch.from_numpy(rows).to(self.device, non_blocking=True)
        batch = {}
        for name, tensor in self.tensors.items():
            if name in self.widths:  # cut before gathering: only the batch's columns are copied
                tensor = tensor[:, : self.width(name, rows, exact)]
            batch[name] = tensor.index_select(0, index)
        return batch


__all__ = ["ResidentBatches"]
