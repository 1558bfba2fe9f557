"""Regulariser config dicts, presets and ablation switches: what gets built, named terms, clear config errors."""

import pytest
import torch

from genrec.tokenizer.base import QuantizerOutput, RegularizerBatch
from genrec.tokenizer.collaborative import CFEmbeddings
from genrec.tokenizer.regularizers import (
    PRESETS,
    AdaSIDRegularizer,
    CodeDiversity,
    CollisionLoadWeight,
    DualTowerContrastive,
    HammingMarginRepulsion,
    RegularizerGroup,
    SemanticCompatibilityGate,
    build_regularizers,
)

pytestmark = pytest.mark.usefixtures("single_thread")

N, D_IN, D_LATENT = 40, 16, 8


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    return {"content": torch.randn(N, D_IN, generator=g), "cf_embeddings": torch.randn(N, 12, generator=g), "latent_dim": D_LATENT}


def batch(progress=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(2, (16, 3), generator=g)
    z = torch.randn(16, D_LATENT, generator=g, requires_grad=True)
    out = QuantizerOutput(z=z, zq=z, codes=codes, residuals=[z, z * 0.5, z * 0.25])
    return RegularizerBatch(item_index=torch.arange(16), x=torch.randn(16, D_IN, generator=g), out=out, progress=progress, epoch=0)


def structure(regs):
    """A comparable summary of what a config built."""
    summary = []
    for reg in regs:
        if isinstance(reg, HammingMarginRepulsion):
            summary.append(("rep", tuple(m.name for m in reg.masks), tuple(h.name for h in reg.pair_weights), callable(reg.weight)))
        elif isinstance(reg, DualTowerContrastive):
            summary.append(("cf", callable(reg.weight)))
        elif isinstance(reg, CodeDiversity):
            summary.append(("div",))
    return summary


def test_presets_build_the_documented_terms(inputs):
    built = {name: structure(build_regularizers(name, **inputs)) for name in PRESETS}
    quasid_rep = ("rep", ("self", "near_duplicate"), (), False)
    assert built["rqvae"] == []
    assert built["rqvae+repulsion"] == [quasid_rep]
    assert built["letter"] == [("cf", False), ("div",)]
    assert built["letter+repulsion"] == [quasid_rep, ("cf", False), ("div",)]
    assert built["quasid"] == [quasid_rep, ("cf", False)]
    assert built["quasid-no-mask"] == [("rep", (), (), False), ("cf", False)]
    assert built["quasid-no-contrastive"] == [quasid_rep]
    assert built["adasid"] == [("rep", ("self",), ("gate", "load"), True), ("cf", True)]
    assert built["adasid-no-gate"] == [("rep", ("self",), ("load",), True), ("cf", True)]
    assert built["adasid-no-load"] == [("rep", ("self",), ("gate",), True), ("cf", True)]
    assert built["adasid-no-schedule"] == [("rep", ("self",), ("gate", "load"), False), ("cf", False)]
    assert built["adasid-no-contrastive"] == [("rep", ("self",), ("gate", "load"), True)]
    severity = build_regularizers("quasid-no-severity", **inputs)[0]
    assert (severity.m0, severity.m1) == (0.2, 0.0)


def test_every_term_is_returned_by_name(inputs):
    regs = build_regularizers("letter+repulsion", **inputs)
    for reg in regs:
        reg.on_epoch_start(0, 0.5, torch.randint(2, (N, 3)))
    names = [name for reg in regs for name in reg(batch())]
    assert names == ["rep", "cf", "div"]
    counted = build_regularizers({"repulsion": {"count_terms": True}, "contrastive": {"count_terms": True}}, **inputs)
    terms = {name for reg in counted for name in reg(batch())}
    assert {"count/rep_pairs", "count/rep_active", "count/rep_masked_self", "count/cf_skipped"} <= terms


def test_config_values_reach_the_objects(inputs):
    config = {
        "repulsion": {"weight": 3.0, "m0": 0.01, "m1": 0.5, "max_hamming": 2, "masks": ["near_duplicate"], "tau_dup": 0.9, "name": "quasid_rep"},
        "gate": {"theta_c": 0.7, "temperature": 0.2, "hard": True},
        "load": {"gamma": 2.0, "prefix_len": 2},
        "schedule": {"floor": 0.25, "cf_warmup": 0.5},
        "contrastive": {"weight": 0.4, "temperature": 0.2, "name": "align"},
        "diversity": {"enabled": False},
    }
    rep, con = build_regularizers(config, **inputs)
    assert (rep.m0, rep.m1, rep.max_hamming, rep.name, rep.masks[0].tau_dup) == (0.01, 0.5, 2, "quasid_rep", 0.9)
    gate, load = rep.pair_weights
    assert isinstance(gate, SemanticCompatibilityGate) and (gate.theta_c, gate.temperature, gate.hard) == (0.7, 0.2, True)
    assert isinstance(load, CollisionLoadWeight) and (load.gamma, load.prefix_len) == (2.0, 2)
    assert rep.weight(0.0) == pytest.approx(3.0) and rep.weight(1.0) == pytest.approx(0.75)
    assert con.weight(0.25) == pytest.approx(0.2) and con.weight(0.5) == pytest.approx(0.4)
    assert con.temperature == 0.2 and con.name == "align"
    # A section that is present is on; absent sections are off.
    assert structure(build_regularizers({"diversity": {}})) == [("div",)]


def test_config_errors(inputs):
    with pytest.raises(ValueError, match=r"unknown regulariser config section\(s\) \['repulsoin'\]"):
        build_regularizers({"repulsoin": {}})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['margin'\] in regulariser config section 'repulsion'"):
        build_regularizers({"repulsion": {"margin": 0.1}})
    with pytest.raises(ValueError, match="unknown regulariser preset 'tiger'"):
        build_regularizers("tiger")
    with pytest.raises(ValueError, match="the 'gate' section weights the repulsion"):
        build_regularizers({"gate": {}})
    with pytest.raises(ValueError, match="contrastive term needs cf_embeddings"):
        build_regularizers({"contrastive": {}}, latent_dim=8)
    with pytest.raises(ValueError, match="needs the quantiser's latent size"):
        build_regularizers({"contrastive": {}}, cf_embeddings=inputs["cf_embeddings"])
    with pytest.raises(ValueError, match="'group' pair mask needs the group column"):
        build_regularizers({"repulsion": {"masks": ["self", "group"]}})
    with pytest.raises(ValueError, match=r"unknown pair mask\(s\) \['seller'\]"):
        build_regularizers({"repulsion": {"masks": ["seller"]}})
    with pytest.raises(ValueError, match="disagree on the number of catalogue items"):
        build_regularizers("quasid", content=torch.randn(N, 4), cf_embeddings=torch.randn(N + 1, 4), latent_dim=8)
    nan_content = inputs["content"].clone()
    nan_content[5] = float("inf")
    with pytest.raises(ValueError, match=r"items \[5\]"):
        build_regularizers("rqvae+repulsion", content=nan_content)


def test_group_mask_from_config(inputs):
    groups = [f"g{i // 4}" for i in range(N)]
    (rep,) = build_regularizers({"repulsion": {"masks": ["self", "group"]}}, groups=groups, content=inputs["content"])
    assert [m.name for m in rep.masks] == ["self", "group"]
    with pytest.raises(ValueError, match=r"no group value \(items \[3\]\)"):
        build_regularizers({"repulsion": {"masks": ["group"]}}, groups=groups[:3] + [None] + groups[4:])
    (allowed,) = build_regularizers({"repulsion": {"masks": ["group"], "allow_missing_groups": True}}, groups=groups[:3] + [None] + groups[4:])
    assert allowed.masks[0].group_of_item[3].item() == -1


def test_adasid_regularizer_switches_and_group(inputs):
    full = AdaSIDRegularizer(**inputs)
    assert isinstance(full, RegularizerGroup)
    assert structure(full.members) == [("rep", ("self",), ("gate", "load"), True), ("cf", True)]
    off = AdaSIDRegularizer(gate=False, load=False, schedule=False, contrastive=False, content=inputs["content"])
    assert structure(off.members) == [("rep", ("self",), (), False)]
    hard = AdaSIDRegularizer(overrides={"gate": {"hard": True}, "repulsion": {"weight": 5.0}}, **inputs)
    assert hard.members[0].pair_weights[0].hard and hard.members[0].weight(0.0) == pytest.approx(5.0)
    full.on_epoch_start(0, 0.0, torch.randint(2, (N, 3)))
    terms = full(batch(progress=0.0))
    assert set(terms) == {"rep", "cf"} and terms["cf"].item() == 0.0  # CF weight warms up from 0
    assert full.stats["rep/pairs"] > 0 and full.stats["cf/weight"] == 0.0
    terms["rep"].backward()


def test_cf_embeddings_object_is_accepted(inputs):
    table = inputs["cf_embeddings"].clone()
    covered = torch.ones(N, dtype=torch.bool)
    covered[:5] = False
    table[:5] = 0
    cf = CFEmbeddings(table, covered, "mf")
    (_, con) = build_regularizers("quasid", content=inputs["content"], cf_embeddings=cf, latent_dim=D_LATENT)
    assert con.covered.sum().item() == N - 5
    con(batch())
    assert con.stats["cf/skipped"] == 5
