"""Conflict-aware valid pair masking (QuaSID, docs/method.md section 3): which overlaps are benign.

A :class:`PairMask` marks candidate pairs whose code overlap is *benign* (not a conflict) so the
repulsion ignores them: the same item twice in a batch, near-duplicate content (the same product
listed twice), or a user rule (items of the same group). Each mask returns a (P,) bool tensor,
True = benign = masked out; the repulsion counts how many pairs each mask hits (rules may overlap:
a pair can be counted by several masks) and returns the counts as ``count/<term>_masked_<mask>``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

from genrec.tokenizer.base import RegularizerBatch
from genrec.tokenizer.pairs import CandidatePairs
from genrec.tokenizer.regularizers.tables import ContentSource, check_item_index, pair_cosine


class PairMask(torch.nn.Module):
    """Marks benign candidate pairs. Subclasses set ``name`` and implement ``forward``."""

    name: str = "mask"

    def forward(self, pairs: CandidatePairs, batch: RegularizerBatch) -> torch.Tensor:
        """(P,) bool, True where the pair's overlap is benign (excluded from the repulsion)."""
        raise NotImplementedError


class SelfPairMask(PairMask):
    """The same catalogue item at two batch rows (sampling with replacement, duplicated rows)."""

    name = "self"

    def forward(self, pairs: CandidatePairs, batch: RegularizerBatch) -> torch.Tensor:
        return batch.item_index[pairs.left] == batch.item_index[pairs.right]


class NearDuplicateMask(PairMask):
    """Near-duplicate content: ``cos(x_i, x_j) >= tau_dup``.

    Args:
        tau_dup: cosine threshold (0.98: the same product listed twice).
        content: optional (N, d) content embeddings of the catalogue; without it the batch's ``x`` is used.
        num_items: N, to check the content table's rows.
    """

    name = "near_duplicate"

    def __init__(self, tau_dup: float = 0.98, content: torch.Tensor | None = None, num_items: int | None = None):
        super().__init__()
        if not -1.0 <= tau_dup <= 1.0:
            raise ValueError(f"tau_dup is a cosine threshold in [-1, 1], got {tau_dup}")
        self.tau_dup = float(tau_dup)
        self.content = ContentSource(content, num_items, "content embeddings (near-duplicate mask)")

    def forward(self, pairs: CandidatePairs, batch: RegularizerBatch) -> torch.Tensor:
        return pair_cosine(self.content.unit_rows(batch), pairs.left, pairs.right) >= self.tau_dup


def _is_missing(value) -> bool:
    """None, NaN, an empty string, or pandas' NA / NaT (recognised by type name: no pandas import here)."""
    return (value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and value.strip() == "")
            or type(value).__name__ in ("NAType", "NaTType"))


def encode_groups(groups: Sequence | torch.Tensor, num_items: int | None = None, allow_missing: bool = False) -> torch.Tensor:
    """Group column -> (N,) long group number per item, -1 = no group.

    Args:
        groups: one value per catalogue item (str / int labels, or a long tensor with -1 = no group).
        num_items: N; a column of another length is an error.
        allow_missing: accept missing values (None, NaN, "", or -1 in a tensor) as "no group"; such
            items are never masked by the group rule. Otherwise a missing value is an error.
    """
    if num_items is not None and len(groups) != num_items:
        raise ValueError(f"group column has {len(groups)} values but the catalogue has {num_items} items")
    if isinstance(groups, torch.Tensor):
        if groups.ndim != 1 or groups.dtype.is_floating_point or groups.dtype == torch.bool:
            raise ValueError(f"a group tensor must be 1-D integer, got shape {tuple(groups.shape)} dtype {groups.dtype}")
        bad = groups < (-1 if allow_missing else 0)
        if bad.any():
            rows = torch.nonzero(bad).flatten()
            raise ValueError(f"group column: invalid group number(s) {groups[bad][:5].tolist()} at items {rows[:10].tolist()}"
                             + ("" if allow_missing else " (-1 = no group needs allow_missing=True)"))
        return groups.long().clone()
    number_of: dict = {}
    encoded, missing = [], []
    for item, value in enumerate(groups):
        if _is_missing(value):
            missing.append(item)
            encoded.append(-1)
            continue
        if not isinstance(value, str | numbers.Integral) or isinstance(value, bool):
            raise ValueError(f"group column: item {item} has a value of type {type(value).__name__} ({value!r}); use str or int labels")
        encoded.append(number_of.setdefault(value if isinstance(value, str) else int(value), len(number_of)))
    if missing and not allow_missing:
        raise ValueError(f"group column: {len(missing)} item(s) have no group value (items {missing[:10]}); "
                         "fill them or pass allow_missing=True to leave those items out of the group rule")
    return torch.tensor(encoded, dtype=torch.long)


class GroupMask(PairMask):
    """User rule: two items of the same group (same product line, same seller template) overlap benignly.

    Args:
        groups: the group column, one value per catalogue item (see :func:`encode_groups`).
        num_items: N, to check the column's length.
        allow_missing: items without a group value are allowed (and never masked by this rule).
    """

    name = "group"

    def __init__(self, groups: Sequence | torch.Tensor, num_items: int | None = None, allow_missing: bool = False):
        super().__init__()
        self.register_buffer("group_of_item", encode_groups(groups, num_items, allow_missing), persistent=False)

    def forward(self, pairs: CandidatePairs, batch: RegularizerBatch) -> torch.Tensor:
        check_item_index(batch.item_index, self.group_of_item.numel(), "the group column")
        group = self.group_of_item[batch.item_index]
        left, right = group[pairs.left], group[pairs.right]
        return (left == right) & (left >= 0)
