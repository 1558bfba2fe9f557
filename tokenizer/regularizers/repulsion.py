"""Hamming-guided margin repulsion (QuaSID, docs/method.md sections 3-4, ours): the plug-and-play repulsion term.

For the candidate pairs of a batch (codes differing at <= H levels, formed inside code buckets by
:func:`genrec.tokenizer.pairs.candidate_pairs`):

    d(i, j) = 1 - cos(z_i, z_j)          m(i, j) = m0 + m1 * s(i, j),   s = (L - h) / L
    L_rep   = sum M w relu(m - d)^2 / max(1, sum M w)

M = 0 for pairs a :class:`~genrec.tokenizer.regularizers.masks.PairMask` calls benign, w = product
of the pair-weight hooks (AdaSID gate and load; 1 without hooks). Severer overlaps get larger
margins. Codes only select pairs; the gradient flows through the encoder outputs z.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from genrec.tokenizer.base import Regularizer, RegularizerBatch
from genrec.tokenizer.pairs import candidate_pairs
from genrec.tokenizer.regularizers.masks import PairMask
from genrec.tokenizer.regularizers.stats import EpochStats
from genrec.tokenizer.regularizers.weighting import PairWeight


def term_weight(weight: float | Callable[[float], float], progress: float) -> float:
    """A term's weight at training progress t: a constant, or a schedule function of t."""
    return float(weight(progress)) if callable(weight) else float(weight)


def latent(batch: RegularizerBatch, on: str) -> torch.Tensor:
    """The batch latents a term acts on: ``z`` (encoder outputs) or ``zq`` (quantised, straight-through)."""
    if on == "z":
        return batch.out.z
    if on == "zq":
        return batch.out.zq
    raise ValueError(f"unknown latent '{on}' (use 'z' or 'zq')")


class HammingMarginRepulsion(Regularizer):
    """Severity-scaled margin repulsion of overlapping pairs, with pluggable masks and weights.

    Args:
        weight: lambda_rep, a constant or a function of progress t (e.g. ``ProgressSchedule.rep_weight``).
        m0, m1: margin ``m = m0 + m1 * severity`` in cosine distance units (d in [0, 2]).
        max_hamming: H, pairs with codes differing at <= H levels are candidates.
        masks: :class:`PairMask` objects; a pair any mask marks benign is left out.
        pair_weights: :class:`PairWeight` hooks multiplied into each pair's weight (AdaSID gate, load).
        on: ``"z"`` (default, docs/method.md) or ``"zq"``.
        max_pairs: cap on candidate pairs per batch; above it a seeded random subset is kept and the
            number left out is counted (``subsampled_out``). None = no cap.
        name: loss-term name, also the prefix of the diagnostics.
        seed: seed of the subsampling generator.
        count_terms: also return the batch's counts as detached ``count/<name>_<key>`` terms (for a
            training loop that leaves ``count/`` terms out of the loss and sums them per epoch).

    Returns per batch ``{name: weight * L_rep}`` (plus the ``count/`` terms when ``count_terms``).
    ``self.stats`` (:class:`~genrec.tokenizer.regularizers.stats.EpochStats`, reset each epoch) sums
    the counts ``<name>/pairs`` (candidates), ``<name>/masked_<mask>`` (per mask; rules may overlap),
    ``<name>/active`` (after masking), ``<name>/violating`` (active pairs with d < m), ``<name>/relaxed``
    (gate), ``<name>/subsampled_out`` (with ``max_pairs``), and averages ``<name>/raw`` (unweighted
    L_rep), ``<name>/weight`` and the hooks' values (``<name>/gate/gate_mean``, ``<name>/load/load_mean`` ...).
    """

    def __init__(self, weight: float | Callable[[float], float] = 1.0, m0: float = 0.05, m1: float = 0.15, max_hamming: int = 1,
                 masks: Sequence[PairMask] = (), pair_weights: Sequence[PairWeight] = (), on: str = "z",
                 max_pairs: int | None = None, name: str = "rep", seed: int = 0, count_terms: bool = False):
        super().__init__()
        if m0 < 0 or m1 < 0:
            raise ValueError(f"margins must be >= 0, got m0={m0}, m1={m1}")
        if max_hamming < 0:
            raise ValueError(f"max_hamming must be >= 0, got {max_hamming}")
        if on not in ("z", "zq"):
            raise ValueError(f"unknown latent '{on}' (use 'z' or 'zq')")
        if max_pairs is not None and max_pairs < 1:
            raise ValueError(f"max_pairs must be >= 1 or None, got {max_pairs}")
        names = [mask.name for mask in masks]
        if len(set(names)) != len(names):
            raise ValueError(f"two masks share a name: {names}")
        self.weight, self.m0, self.m1, self.max_hamming = weight, float(m0), float(m1), int(max_hamming)
        self.masks = torch.nn.ModuleList(masks)
        self.pair_weights = torch.nn.ModuleList(pair_weights)
        self.on, self.max_pairs, self.name, self.count_terms = on, max_pairs, name, bool(count_terms)
        self.generator = torch.Generator().manual_seed(seed)
        self.stats = EpochStats()

    def on_epoch_start(self, epoch: int, progress: float, catalogue_codes: torch.Tensor) -> None:
        self.stats.reset()
        for hook in self.pair_weights:
            hook.on_epoch_start(epoch, progress, catalogue_codes)

    def margin(self, severity: torch.Tensor) -> torch.Tensor:
        """(P,) margin of pairs of the given severity."""
        return self.m0 + self.m1 * severity

    def forward(self, batch: RegularizerBatch) -> dict[str, torch.Tensor]:
        z = latent(batch, self.on)
        pairs = candidate_pairs(batch.out.codes, self.max_hamming)
        counts: dict[str, float] = {"pairs": len(pairs)}
        if self.max_pairs is not None:
            counts["subsampled_out"] = max(0, len(pairs) - self.max_pairs)
            if len(pairs) > self.max_pairs:
                keep = torch.randperm(len(pairs), generator=self.generator)[: self.max_pairs].sort().values
                pairs = pairs.select(keep.to(pairs.left.device))
        benign = torch.zeros(len(pairs), dtype=torch.bool, device=z.device)
        for mask in self.masks:
            hit = mask(pairs, batch)
            counts[f"masked_{mask.name}"] = int(hit.sum())
            benign |= hit
        active = ~benign
        counts["active"] = int(active.sum())
        weight = active.float()
        for hook in self.pair_weights:
            weight = weight * hook(pairs, batch, active)
            counts.update(hook.last_counts)
            for key, value in hook.last_values.items():
                self.stats.mean(f"{self.name}/{hook.name}/{key}", value)
        used = weight > 0
        if used.any():
            left, right, w = pairs.left[used], pairs.right[used], weight[used]
            unit = F.normalize(z, dim=1, eps=1e-12)
            # F.embedding gathers rows with a deterministic CPU backward (indexing's is not, with threads).
            distance = 1.0 - (F.embedding(left, unit) * F.embedding(right, unit)).sum(dim=1)
            shortfall = torch.relu(self.margin(pairs.severity[used]) - distance)
            counts["violating"] = int((shortfall > 0).sum())
            raw = (w * shortfall.pow(2)).sum() / w.sum().clamp(min=1.0)
        else:
            counts["violating"] = 0
            raw = z.sum() * 0.0  # keeps a graph so the term can always be summed into the loss
        lam = term_weight(self.weight, batch.progress)
        for key, value in counts.items():
            self.stats.count(f"{self.name}/{key}", value)
        self.stats.mean(f"{self.name}/raw", float(raw.detach()))
        self.stats.mean(f"{self.name}/weight", lam)
        terms = {self.name: lam * raw}
        if self.count_terms:
            terms.update({f"count/{self.name}_{key}": torch.tensor(float(value)) for key, value in counts.items()})
        return terms
