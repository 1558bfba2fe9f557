"""AdaSID as one regulariser object: gate + load + schedule + repulsion + contrastive, each switchable.

:class:`AdaSIDRegularizer` is a :class:`RegularizerGroup` built from the ``adasid`` preset of
:mod:`genrec.tokenizer.regularizers.factory` (the one place where terms are wired together); the
switches give the ablations (gate, load, schedule, contrastive off) and ``overrides`` any preset value.
"""

from __future__ import annotations

import torch

from genrec.tokenizer.base import Regularizer, RegularizerBatch
from genrec.tokenizer.regularizers.factory import build_regularizers, preset


class RegularizerGroup(Regularizer):
    """Several regularisers acting as one: epoch hooks forwarded, named terms merged (names must be distinct)."""

    def __init__(self, regularizers: list[Regularizer]):
        super().__init__()
        self.members = torch.nn.ModuleList(regularizers)

    @property
    def stats(self) -> dict[str, float]:
        """The members' per-epoch diagnostics, merged (keys are namespaced by term name)."""
        return {key: value for member in self.members for key, value in getattr(member, "stats", {}).items()}

    def on_epoch_start(self, epoch: int, progress: float, catalogue_codes: torch.Tensor) -> None:
        for member in self.members:
            member.on_epoch_start(epoch, progress, catalogue_codes)

    def forward(self, batch: RegularizerBatch) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        for member in self.members:
            for name, value in member(batch).items():
                if name in terms:
                    raise ValueError(f"two regulariser terms are named '{name}'")
                terms[name] = value
        return terms


class AdaSIDRegularizer(RegularizerGroup):
    """AdaSID (docs/method.md section 4): ``lambda_rep(t) sum g a relu(m - d)^2 / sum g a + lambda_cf(t) L_cf``.

    Args:
        gate, load, schedule, contrastive: switch each stage on/off (ablations).
        overrides: ``{section: {key: value}}`` merged over the ``adasid`` preset (e.g. ``{"gate": {"hard": True}}``).
        content, cf_embeddings, groups, latent_dim, num_items: as for :func:`build_regularizers`.
    """

    def __init__(self, *, gate: bool = True, load: bool = True, schedule: bool = True, contrastive: bool = True,
                 overrides: dict | None = None, content=None, cf_embeddings=None, groups=None, latent_dim: int | None = None,
                 num_items: int | None = None):
        config = preset("adasid")
        for section, enabled in (("gate", gate), ("load", load), ("schedule", schedule), ("contrastive", contrastive)):
            config[section]["enabled"] = enabled
        for section, values in (overrides or {}).items():
            if not isinstance(values, dict):
                raise ValueError(f"overrides['{section}'] must be a mapping, got {values!r}")
            config.setdefault(section, {}).update(values)
        super().__init__(build_regularizers(config, content=content, cf_embeddings=cf_embeddings, groups=groups,
                                            latent_dim=latent_dim, num_items=num_items))
