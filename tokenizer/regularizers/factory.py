"""Regularisers from a plain config dict, and the named presets of the comparison (docs/method.md section 6).

A config has up to six sections; a section that is present is on unless it says ``enabled: false``,
a missing section is off, and unknown keys are errors. Defaults (ours, untuned beyond the synthetic
checks in tests/test_regularizers*.py; see docs/regularizers.md):

    repulsion:   weight 1.0, m0 0.05, m1 0.15, max_hamming 1, on z, masks [self], tau_dup 0.98,
                 allow_missing_groups false, max_pairs null, name rep, seed 0, count_terms false
    gate:        theta_c 0.9, temperature 0.05, hard false, cf_mix 0.0,
                 relax_collisions true                                        (needs repulsion)
    load:        gamma 1.0, prefix_len null                                   (needs repulsion)
    schedule:    floor 0.1, cf_warmup 0.3    (lambda_rep = repulsion.weight, lambda_cf = contrastive.weight)
    contrastive: weight 0.05, temperature 0.1, proj_dim 64, hidden_dim 128, on zq, latent_dim null,
                 name cf, seed 0, count_terms false                           (needs cf_embeddings)
    diversity:   weight 0.01, t 2.0, name div

Masks: ``self`` (same item twice), ``near_duplicate`` (content cosine >= tau_dup), ``group`` (same
value in the user's group column; needs ``groups=``). :func:`build_regularizers` returns the enabled
terms as independent regularisers (repulsion with its masks and AdaSID hooks, contrastive, diversity)
for ``Quantizer.fit(x, regularizers=...)``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import torch

from genrec.tokenizer.base import Regularizer
from genrec.tokenizer.regularizers.contrastive import DualTowerContrastive
from genrec.tokenizer.regularizers.diversity import CodeDiversity
from genrec.tokenizer.regularizers.masks import GroupMask, NearDuplicateMask, PairMask, SelfPairMask
from genrec.tokenizer.regularizers.repulsion import HammingMarginRepulsion
from genrec.tokenizer.regularizers.weighting import (
    CollisionLoadWeight,
    ProgressSchedule,
    SemanticCompatibilityGate,
)

logger = logging.getLogger(__name__)

SECTION_DEFAULTS: dict[str, dict] = {
    "repulsion": {"enabled": True, "weight": 1.0, "m0": 0.05, "m1": 0.15, "max_hamming": 1, "on": "z", "masks": ["self"],
                  "tau_dup": 0.98, "allow_missing_groups": False, "max_pairs": None, "name": "rep", "seed": 0,
                  "count_terms": False},
    "gate": {"enabled": True, "theta_c": 0.9, "temperature": 0.05, "hard": False, "cf_mix": 0.0, "relax_collisions": True},
    "load": {"enabled": True, "gamma": 1.0, "prefix_len": None},
    "schedule": {"enabled": True, "floor": 0.1, "cf_warmup": 0.3},
    "contrastive": {"enabled": True, "weight": 0.05, "temperature": 0.1, "proj_dim": 64, "hidden_dim": 128, "on": "zq",
                    "latent_dim": None, "name": "cf", "seed": 0, "count_terms": False},
    "diversity": {"enabled": True, "weight": 0.01, "t": 2.0, "name": "div"},
}
MASK_NAMES = ("self", "near_duplicate", "group")

_QUASID_REPULSION = {"masks": ["self", "near_duplicate"]}
_ADASID = {"repulsion": {"masks": ["self"]}, "gate": {}, "load": {}, "schedule": {}, "contrastive": {}}
PRESETS: dict[str, dict] = {
    "rqvae": {},
    "rqvae+repulsion": {"repulsion": _QUASID_REPULSION},
    "letter": {"contrastive": {}, "diversity": {}},
    "letter+repulsion": {"contrastive": {}, "diversity": {}, "repulsion": _QUASID_REPULSION},
    "quasid": {"repulsion": _QUASID_REPULSION, "contrastive": {}},
    "quasid-no-mask": {"repulsion": {"masks": []}, "contrastive": {}},
    "quasid-no-contrastive": {"repulsion": _QUASID_REPULSION},
    "quasid-no-severity": {"repulsion": {**_QUASID_REPULSION, "m0": 0.2, "m1": 0.0}, "contrastive": {}},
    "adasid": _ADASID,
    "adasid-no-gate": {**_ADASID, "gate": {"enabled": False}},
    "adasid-no-load": {**_ADASID, "load": {"enabled": False}},
    "adasid-no-schedule": {**_ADASID, "schedule": {"enabled": False}},
    "adasid-no-contrastive": {**_ADASID, "contrastive": {"enabled": False}},
}


def preset(name: str) -> dict:
    """A copy of a named preset config (see ``PRESETS``; documented in docs/regularizers.md)."""
    if name not in PRESETS:
        raise ValueError(f"unknown regulariser preset '{name}'; available: {sorted(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


def resolve_config(config: dict | str) -> dict[str, dict]:
    """Every section filled with its defaults (``enabled`` False for absent sections); unknown keys are errors."""
    if isinstance(config, str):
        config = preset(config)
    if not isinstance(config, dict):
        raise TypeError(f"regulariser config must be a dict or a preset name, got {type(config).__name__}")
    unknown = sorted(set(config) - set(SECTION_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown regulariser config section(s) {unknown}; known: {sorted(SECTION_DEFAULTS)}")
    resolved = {}
    for section, defaults in SECTION_DEFAULTS.items():
        given = config.get(section)
        if given is None:
            resolved[section] = {**copy.deepcopy(defaults), "enabled": False}
            continue
        if not isinstance(given, dict):
            raise ValueError(f"regulariser config section '{section}' must be a mapping, got {given!r}")
        bad = sorted(set(given) - set(defaults))
        if bad:
            raise ValueError(f"unknown key(s) {bad} in regulariser config section '{section}'; known: {sorted(defaults)}")
        resolved[section] = {**copy.deepcopy(defaults), **copy.deepcopy(given)}
    return resolved


def _num_items(content, cf_embeddings, groups, num_items) -> int | None:
    sizes = {}
    if num_items is not None:
        sizes["num_items"] = int(num_items)
    if content is not None:
        sizes["content"] = len(content)
    if cf_embeddings is not None:
        sizes["cf_embeddings"] = len(getattr(cf_embeddings, "embeddings", cf_embeddings))
    if groups is not None:
        sizes["groups"] = len(groups)
    if len(set(sizes.values())) > 1:
        raise ValueError(f"the per-item inputs disagree on the number of catalogue items: {sizes}")
    return next(iter(sizes.values()), None)


def _masks(names: Sequence[str], section: dict, content, groups, num_items) -> list[PairMask]:
    unknown = [name for name in names if name not in MASK_NAMES]
    if unknown:
        raise ValueError(f"unknown pair mask(s) {unknown}; available: {list(MASK_NAMES)}")
    masks: list[PairMask] = []
    for name in names:
        if name == "self":
            masks.append(SelfPairMask())
        elif name == "near_duplicate":
            masks.append(NearDuplicateMask(section["tau_dup"], content, num_items))
        else:
            if groups is None:
                raise ValueError("the 'group' pair mask needs the group column: pass groups=<one value per item>")
            masks.append(GroupMask(groups, num_items, section["allow_missing_groups"]))
    return masks


def build_regularizers(config: dict | str, *, content: torch.Tensor | None = None, cf_embeddings=None,
                       groups: Sequence | torch.Tensor | None = None, latent_dim: int | None = None,
                       num_items: int | None = None) -> list[Regularizer]:
    """The enabled regularisers of ``config`` (a dict or a preset name).

    Args:
        content: (N, d) content embeddings for the near-duplicate mask and the gate (else they use batch.x).
        cf_embeddings: (N, d_cf) CF embeddings or a ``CFEmbeddings`` (contrastive term, gate's cf_mix).
        groups: group column, one value per item (the ``group`` mask).
        latent_dim: the quantiser's latent size, for the contrastive item tower (or ``contrastive.latent_dim``).
        num_items: N, checked against every per-item input.
    """
    cfg = resolve_config(config)
    rep, gate, load, schedule, con, div = (cfg[s] for s in ("repulsion", "gate", "load", "schedule", "contrastive", "diversity"))
    n = _num_items(content, cf_embeddings, groups, num_items)
    for hook in ("gate", "load"):
        if cfg[hook]["enabled"] and not rep["enabled"]:
            raise ValueError(f"the '{hook}' section weights the repulsion; enable 'repulsion' too")
    if schedule["enabled"] and not (rep["enabled"] or con["enabled"]):
        raise ValueError("the 'schedule' section schedules the repulsion and contrastive weights; enable one of them")
    if groups is not None and not (rep["enabled"] and "group" in rep["masks"]):
        logger.warning("build_regularizers: a group column was given but no enabled 'group' mask uses it")
    rep_weight, cf_weight = rep["weight"], con["weight"]
    if schedule["enabled"]:
        plan = ProgressSchedule(lambda_rep=rep["weight"], lambda_cf=con["weight"], floor=schedule["floor"], cf_warmup=schedule["cf_warmup"])
        rep_weight, cf_weight = plan.rep_weight, plan.cf_weight
    regularizers: list[Regularizer] = []
    if rep["enabled"]:
        hooks = []
        if gate["enabled"]:
            # CF embeddings reach the gate whenever they exist: with cf_mix 0 they only feed its co-interaction diagnostics
            cf_table = getattr(cf_embeddings, "embeddings", cf_embeddings)
            hooks.append(SemanticCompatibilityGate(gate["theta_c"], gate["temperature"], gate["hard"], content, cf_table, gate["cf_mix"], n,
                                                   gate["relax_collisions"]))
        if load["enabled"]:
            hooks.append(CollisionLoadWeight(load["gamma"], load["prefix_len"]))
        regularizers.append(HammingMarginRepulsion(
            rep_weight, rep["m0"], rep["m1"], rep["max_hamming"], _masks(rep["masks"], rep, content, groups, n), hooks,
            rep["on"], rep["max_pairs"], rep["name"], rep["seed"], rep["count_terms"]))
    if con["enabled"]:
        if cf_embeddings is None:
            raise ValueError("the contrastive term needs cf_embeddings (e.g. from genrec.tokenizer.collaborative.train_cf_embeddings)")
        dim = con["latent_dim"] or latent_dim
        if dim is None:
            raise ValueError("the contrastive term needs the quantiser's latent size: pass latent_dim= or set contrastive.latent_dim")
        regularizers.append(DualTowerContrastive(cf_embeddings, dim, cf_weight, con["temperature"], con["proj_dim"], con["hidden_dim"],
                                                 con["on"], num_items=n, name=con["name"], seed=con["seed"],
                                                 count_terms=con["count_terms"]))
    if div["enabled"]:
        regularizers.append(CodeDiversity(div["weight"], div["t"], div["name"]))
    return regularizers
