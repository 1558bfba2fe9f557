"""AdaSID's adaptive pressure (docs/method.md section 4, ours): per-pair gate and load weights, and the progress schedule.

Pair weights multiply the repulsion of each candidate pair (after masking):
``L_rep = sum_pairs M g a relu(m - d)^2 / max(1, sum_pairs M g a)``. They are constants for the
gradient (computed without autograd): codes and content only decide *which* pairs and *how much*.

- :class:`SemanticCompatibilityGate` (stage 1, semantic relaxation): ``g = sigmoid((theta_c - kappa) / T)``
  with ``kappa = cos(x_i, x_j)`` (optionally mixed with the CF cosine); compatible pairs (kappa
  above theta_c) go to g ~ 0, so their code sharing is preserved. ``hard=True``: ``g = 1[kappa < theta_c]``.
- :class:`CollisionLoadWeight` (stage 2a): ``a = (n / mean n)^gamma`` normalised to mean 1 over the
  active pairs, with n the size of the pair's bucket in the *whole catalogue* (recounted every epoch
  from the catalogue codes the training loop hands to ``on_epoch_start``).
- :class:`ProgressSchedule` (stage 2b): repulsion weight cosine-decays from lambda_rep to
  floor * lambda_rep over progress t in [0, 1]; the collaborative weight warms up linearly to
  lambda_cf by t = cf_warmup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from genrec.tokenizer.base import RegularizerBatch
from genrec.tokenizer.pairs import CandidatePairs, CatalogueLoad
from genrec.tokenizer.regularizers.tables import (
    ContentSource,
    check_item_index,
    check_item_table,
    pair_cosine,
    unit_rows,
)


class PairWeight(torch.nn.Module):
    """A per-pair weight hook of the repulsion.

    After each call, ``last_counts`` (summed per epoch by the repulsion) and ``last_values``
    (averaged per epoch) hold the batch's diagnostics.
    """

    name: str = "weight"

    def __init__(self):
        super().__init__()
        self.last_counts: dict[str, float] = {}
        self.last_values: dict[str, float] = {}

    def on_epoch_start(self, epoch: int, progress: float, catalogue_codes: torch.Tensor) -> None:  # noqa: B027
        """Refresh catalogue-level state. Default: nothing."""

    def forward(self, pairs: CandidatePairs, batch: RegularizerBatch, active: torch.Tensor) -> torch.Tensor:
        """(P,) float weight of each pair; ``active`` (P,) bool marks the pairs that survived masking."""
        raise NotImplementedError


class SemanticCompatibilityGate(PairWeight):
    """Relaxes the repulsion of semantically compatible overlapping pairs.

    Args:
        theta_c: compatibility threshold on kappa (cosine).
        temperature: T of the soft gate (smaller = sharper).
        hard: use the step ``1[kappa < theta_c]`` instead of the sigmoid.
        content: optional (N, d) content embeddings; without it the batch's ``x`` is used.
        cf_embeddings: optional (N, d_cf) CF item embeddings; all-zero rows mean "no CF data". Used in kappa
            only when ``cf_mix`` > 0; given with ``cf_mix`` = 0 they still feed the co-interaction diagnostics.
        cf_mix: weight of the CF cosine in kappa, ``kappa = (1 - cf_mix) cos_x + cf_mix cos_cf``; a pair
            where either item has no CF data uses ``cos_x`` alone.
        num_items: N, to check the tables' rows.
        relax_collisions: also relax full collisions (pairs agreeing on every level). False keeps their full
            repulsion: two items with one semantic code are told apart only by the meaningless dedup code,
            however compatible they are, so the gate then preserves partial (prefix) sharing only.
    Diagnostics, over the active (unmasked) pairs of each batch; counts are summed over the epoch, values
    averaged over its batches:

    - counts ``relaxed`` (g < 0.5), ``relaxed_collisions`` (of those, full collisions) and
      ``kappa_above_<t>`` for t in :data:`KAPPA_LEVELS`: how many pairs another ``theta_c`` would relax
      (the threshold is the setting users most need to calibrate: cosine scales differ between embedding models);
    - values ``gate_mean`` (mean g), ``kappa_mean``, ``kappa_p50``, ``kappa_p90``, and ``kappa_relaxed`` /
      ``kappa_kept``: mean kappa of the pairs the gate relaxes / keeps (which overlaps it preserves);
    - with CF embeddings: ``cf_relaxed`` / ``cf_kept``, the mean CF cosine (co-interaction similarity) of
      the relaxed / kept pairs whose items both have CF data, and ``cf_kappa_corr``, the correlation of
      content and CF cosine over those pairs: whether content-compatible overlaps are also consumed alike.
    """

    KAPPA_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9)

    name = "gate"

    def __init__(self, theta_c: float = 0.9, temperature: float = 0.05, hard: bool = False, content: torch.Tensor | None = None,
                 cf_embeddings: torch.Tensor | None = None, cf_mix: float = 0.0, num_items: int | None = None,
                 relax_collisions: bool = True):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"gate temperature must be > 0, got {temperature}")
        if not 0.0 <= cf_mix <= 1.0:
            raise ValueError(f"cf_mix must be in [0, 1], got {cf_mix}")
        if cf_mix > 0 and cf_embeddings is None:
            raise ValueError("cf_mix > 0 needs cf_embeddings")
        self.theta_c, self.temperature, self.hard, self.cf_mix = float(theta_c), float(temperature), bool(hard), float(cf_mix)
        self.relax_collisions = bool(relax_collisions)
        self.content = ContentSource(content, num_items, "content embeddings (compatibility gate)")
        cf_unit = None if cf_embeddings is None else unit_rows(check_item_table(cf_embeddings, "CF embeddings (compatibility gate)", num_items))
        self.register_buffer("cf_unit", cf_unit, persistent=False)

    def _cf_cosine(self, pairs: CandidatePairs, batch: RegularizerBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(P,) CF cosine of each pair and (P,) bool: both items have CF data."""
        check_item_index(batch.item_index, self.cf_unit.shape[0], "CF embeddings (compatibility gate)")
        cf = self.cf_unit[batch.item_index]
        has_cf = cf.abs().sum(dim=1) > 0
        return pair_cosine(cf, pairs.left, pairs.right), has_cf[pairs.left] & has_cf[pairs.right]

    def compatibility(self, pairs: CandidatePairs, batch: RegularizerBatch) -> torch.Tensor:
        """(P,) kappa of each pair."""
        kappa = pair_cosine(self.content.unit_rows(batch), pairs.left, pairs.right)
        if self.cf_mix == 0 or self.cf_unit is None:
            return kappa
        cf_cos, both = self._cf_cosine(pairs, batch)
        return torch.where(both, (1 - self.cf_mix) * kappa + self.cf_mix * cf_cos, kappa)

    @torch.no_grad()
    def forward(self, pairs: CandidatePairs, batch: RegularizerBatch, active: torch.Tensor) -> torch.Tensor:
        kappa = self.compatibility(pairs, batch)
        if self.hard:
            gate = (kappa < self.theta_c).float()
        else:
            gate = torch.sigmoid((self.theta_c - kappa) / self.temperature)
        if not self.relax_collisions:
            gate = torch.where(pairs.hamming == 0, torch.ones_like(gate), gate)
        self._record(pairs, batch, active, kappa, gate)
        return gate

    def _record(self, pairs: CandidatePairs, batch: RegularizerBatch, active: torch.Tensor, kappa: torch.Tensor,
                gate: torch.Tensor) -> None:
        """The batch's diagnostics (see the class docstring) into ``last_counts`` / ``last_values``."""
        on, k = gate[active], kappa[active]
        relaxed = on < 0.5
        self.last_counts = {"relaxed": float(relaxed.sum()), "relaxed_collisions": float((relaxed & (pairs.hamming[active] == 0)).sum()),
                            **{f"kappa_above_{t}": float((k >= t).sum()) for t in self.KAPPA_LEVELS}}
        nan = float("nan")

        def mean(values: torch.Tensor) -> float:
            return float(values.mean()) if values.numel() else nan

        self.last_values = {"gate_mean": mean(on), "kappa_mean": mean(k), "kappa_relaxed": mean(k[relaxed]), "kappa_kept": mean(k[~relaxed])}
        if k.numel():
            p50, p90 = torch.quantile(k.float(), torch.tensor([0.5, 0.9], dtype=torch.float32, device=k.device)).tolist()
            self.last_values.update(kappa_p50=p50, kappa_p90=p90)
        if self.cf_unit is not None:
            cf_cos, both = self._cf_cosine(pairs, batch)
            cf_cos, both = cf_cos[active], both[active]
            corr = nan
            if int(both.sum()) > 2:
                stacked = torch.stack([k[both].float(), cf_cos[both].float()])
                corr = float(torch.corrcoef(stacked)[0, 1])
            self.last_values.update(cf_relaxed=mean(cf_cos[both & relaxed]), cf_kept=mean(cf_cos[both & ~relaxed]), cf_kappa_corr=corr)


class CollisionLoadWeight(PairWeight):
    """More repulsion for pairs in congested buckets, counted over the whole catalogue.

    Args:
        gamma: exponent of ``(n / mean n)``; 0 gives uniform weights.
        prefix_len: None: a pair's bucket = catalogue items agreeing with it on every level where the
            pair agrees (see :class:`genrec.tokenizer.pairs.CatalogueLoad`); p: items sharing the first p codes.
    The bucket histogram is rebuilt in ``on_epoch_start`` from the catalogue codes (stale by at most
    one epoch); a pair whose bucket the catalogue histogram lacks counts as n = 2 (the pair itself).
    Diagnostics (values): ``load_mean`` = mean n over active pairs, ``load_max``, ``weight_max`` = largest a,
    ``weight_min``, and ``top_decile_share``: the share of the batch's pressure (sum of a) on its 10% most
    loaded active pairs (0.1 = spread evenly, as without the load weights).
    """

    name = "load"

    def __init__(self, gamma: float = 1.0, prefix_len: int | None = None):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma, self.prefix_len = float(gamma), prefix_len
        self.catalogue_load: CatalogueLoad | None = None

    def on_epoch_start(self, epoch: int, progress: float, catalogue_codes: torch.Tensor) -> None:
        self.catalogue_load = CatalogueLoad(catalogue_codes.detach(), self.prefix_len)

    @torch.no_grad()
    def forward(self, pairs: CandidatePairs, batch: RegularizerBatch, active: torch.Tensor) -> torch.Tensor:
        if self.catalogue_load is None:
            raise RuntimeError("CollisionLoadWeight needs the catalogue codes: call on_epoch_start(epoch, progress, catalogue_codes) "
                               "before the first batch (the RQ-VAE training loop does)")
        load = self.catalogue_load.pair_load(batch.out.codes, pairs).clamp(min=2).float()
        weight = torch.ones_like(load)
        if active.any():
            on = load[active]
            weight = (load / on.mean()).pow(self.gamma)
            weight = weight / weight[active].mean()
            active_weight = weight[active]
            top = max(1, round(0.1 * on.numel()))
            # a grows with the load, so the largest weights are the most loaded pairs
            top_share = float(active_weight.sort(descending=True).values[:top].sum() / active_weight.sum())
            self.last_values = {"load_mean": float(on.mean()), "load_max": float(on.max()), "weight_max": float(active_weight.max()),
                                "weight_min": float(active_weight.min()), "top_decile_share": top_share}
        else:
            self.last_values = {}
        return weight


@dataclass
class ProgressSchedule:
    """Term weights as functions of training progress t in [0, 1].

    Attributes:
        lambda_rep: repulsion weight at t = 0.
        lambda_cf: collaborative (contrastive) weight once warmed up.
        floor: repulsion weight at t = 1, as a fraction of lambda_rep (cosine decay in between).
        cf_warmup: progress at which the collaborative weight reaches lambda_cf (linear from 0); 0 = no warm-up.
    """

    lambda_rep: float = 1.0
    lambda_cf: float = 0.05
    floor: float = 0.1
    cf_warmup: float = 0.3

    def __post_init__(self):
        if not 0.0 <= self.floor <= 1.0:
            raise ValueError(f"schedule floor must be in [0, 1], got {self.floor}")
        if not 0.0 <= self.cf_warmup <= 1.0:
            raise ValueError(f"schedule cf_warmup must be in [0, 1], got {self.cf_warmup}")

    @staticmethod
    def _check(t: float) -> float:
        if not -1e-9 <= t <= 1 + 1e-9:
            raise ValueError(f"training progress must be in [0, 1], got {t}")
        return min(max(float(t), 0.0), 1.0)

    def rep_weight(self, t: float) -> float:
        t = self._check(t)
        return self.lambda_rep * (self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * t)))

    def cf_weight(self, t: float) -> float:
        t = self._check(t)
        return self.lambda_cf if self.cf_warmup == 0 else self.lambda_cf * min(1.0, t / self.cf_warmup)
