"""Dual-tower contrastive alignment with collaborative embeddings (QuaSID dual tower, LETTER CF alignment).

Symmetric InfoNCE with in-batch negatives between a projection of each batch item's quantised
latent (``zq``, straight-through, so gradients reach the encoder; or ``z``) and a projection of its
collaborative embedding ``v_i`` (a fixed (N, d_cf) table, e.g. from
:func:`genrec.tokenizer.collaborative.train_cf_embeddings`):

    q_i = norm(P_z(zq_i)),  u_i = norm(P_cf(v_i)),  logits = q u^T / tau
    L_cf = (CE(logits, diag) + CE(logits^T, diag)) / 2

Items without CF data (a False entry in the coverage mask, or an all-zero row when no mask is given)
are left out of the term and counted (``count/<name>_skipped``). The same item at two batch rows is
not its own negative. Both projection heads are trainable (the training loop optimises them).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from genrec.tokenizer.base import Regularizer, RegularizerBatch
from genrec.tokenizer.regularizers.repulsion import latent, term_weight
from genrec.tokenizer.regularizers.stats import EpochStats
from genrec.tokenizer.regularizers.tables import check_item_index, check_item_table


def projection_head(input_dim: int, hidden_dim: int, output_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, output_dim))


class DualTowerContrastive(Regularizer):
    """Symmetric InfoNCE between projected item latents and projected CF embeddings.

    Args:
        cf_embeddings: (N, d_cf) CF embedding of every catalogue item, or a
            :class:`~genrec.tokenizer.collaborative.CFEmbeddings` (its ``covered`` mask marks items with CF data).
        latent_dim: d of the quantiser's latents (the item tower's input).
        weight: lambda_cf, a constant or a function of progress t (e.g. ``ProgressSchedule.cf_weight``).
        temperature: tau of the InfoNCE.
        proj_dim, hidden_dim: sizes of both two-layer projection heads.
        on: ``"zq"`` (default, docs/method.md) or ``"z"``.
        covered: optional (N,) bool, items that have CF data (default: rows that are not all zero).
        num_items: N, to check the table's rows.
        name: loss-term name. seed: initialisation of the heads (independent of the global RNG).
        count_terms: also return ``count/<name>_skipped`` (see :class:`HammingMarginRepulsion`).
    Returns per batch ``{name: weight * L_cf}``. ``self.stats`` (reset each epoch) sums ``<name>/skipped``
    (batch items without CF data) and averages ``<name>/raw`` (unweighted L_cf) and ``<name>/weight``.
    """

    def __init__(self, cf_embeddings, latent_dim: int, weight: float | Callable[[float], float] = 0.05, temperature: float = 0.1,
                 proj_dim: int = 64, hidden_dim: int = 128, on: str = "zq", covered: torch.Tensor | None = None,
                 num_items: int | None = None, name: str = "cf", seed: int = 0,
                 count_terms: bool = False):
        super().__init__()
        if hasattr(cf_embeddings, "embeddings") and hasattr(cf_embeddings, "covered"):
            cf_embeddings, covered = cf_embeddings.embeddings, cf_embeddings.covered if covered is None else covered
        table = check_item_table(cf_embeddings, "CF embeddings", num_items)
        if covered is None:
            covered = table.abs().sum(dim=1) > 0
        elif covered.shape != (table.shape[0],) or covered.dtype != torch.bool:
            raise ValueError(f"covered must be a ({table.shape[0]},) bool tensor, got shape {tuple(covered.shape)} dtype {covered.dtype}")
        if int(covered.sum()) == 0:
            raise ValueError("CF embeddings cover no item (every row is missing or all zero)")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if on not in ("z", "zq"):
            raise ValueError(f"unknown latent '{on}' (use 'z' or 'zq')")
        self.register_buffer("cf_embeddings", table, persistent=False)
        self.register_buffer("covered", covered.clone(), persistent=False)
        self.weight, self.temperature, self.on, self.name, self.count_terms = weight, float(temperature), on, name, bool(count_terms)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.item_head = projection_head(int(latent_dim), hidden_dim, proj_dim)
            self.cf_head = projection_head(table.shape[1], hidden_dim, proj_dim)
        self.stats = EpochStats()

    def on_epoch_start(self, epoch: int, progress: float, catalogue_codes: torch.Tensor) -> None:
        self.stats.reset()

    def info_nce(self, latents: torch.Tensor, item_index: torch.Tensor) -> torch.Tensor:
        """Unweighted symmetric InfoNCE of (n, d) latents against the CF embeddings of ``item_index`` (n,)."""
        q = nn.functional.normalize(self.item_head(latents), dim=1)
        u = nn.functional.normalize(self.cf_head(self.cf_embeddings[item_index]), dim=1)
        logits = q @ u.T / self.temperature
        same_item = item_index[:, None] == item_index[None, :]
        same_item.fill_diagonal_(False)
        logits = logits.masked_fill(same_item, float("-inf"))
        target = torch.arange(len(item_index), device=logits.device)
        return 0.5 * (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target))

    def forward(self, batch: RegularizerBatch) -> dict[str, torch.Tensor]:
        check_item_index(batch.item_index, self.cf_embeddings.shape[0], "CF embeddings")
        latents = latent(batch, self.on)
        keep = self.covered[batch.item_index]
        skipped = int((~keep).sum())
        lam = term_weight(self.weight, batch.progress)
        if int(keep.sum()) < 2:  # nothing to contrast: no cost, still logged
            raw, value = float("nan"), latents.sum() * 0.0
        elif lam == 0.0:  # weighted out by the schedule: measure the term, skip the backward
            with torch.no_grad():
                raw = float(self.info_nce(latents[keep], batch.item_index[keep]))
            value = latents.sum() * 0.0
        else:
            loss = self.info_nce(latents[keep], batch.item_index[keep])
            raw, value = float(loss.detach()), lam * loss
        self.stats.count(f"{self.name}/skipped", skipped)
        self.stats.mean(f"{self.name}/raw", raw)
        self.stats.mean(f"{self.name}/weight", lam)
        terms = {self.name: value}
        if self.count_terms:
            terms[f"count/{self.name}_skipped"] = torch.tensor(float(skipped))
        return terms
