"""Collision-aware regularisers on hand-made batches: masks, margins, gate, load, schedule, contrastive, diversity."""

import math

import numpy as np
import pytest
import torch

from genrec.tokenizer.base import QuantizerOutput, RegularizerBatch
from genrec.tokenizer.pairs import candidate_pairs
from genrec.tokenizer.regularizers import (
    CodeDiversity,
    CollisionLoadWeight,
    DualTowerContrastive,
    GroupMask,
    HammingMarginRepulsion,
    NearDuplicateMask,
    ProgressSchedule,
    SelfPairMask,
    SemanticCompatibilityGate,
    encode_groups,
    uniformity,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def make_batch(codes, z=None, x=None, item_index=None, progress=0.0, residuals=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    codes = torch.as_tensor(codes)
    n = len(codes)
    z = torch.randn(n, 8, generator=g) if z is None else z
    out = QuantizerOutput(z=z, zq=z, codes=codes, residuals=[z] if residuals is None else residuals)
    item_index = torch.arange(n) if item_index is None else torch.as_tensor(item_index)
    x = torch.randn(n, 16, generator=g) if x is None else x
    return RegularizerBatch(item_index=item_index, x=x, out=out, progress=progress, epoch=0)


def pair_set(pairs, hit):
    return {(int(a), int(b)) for a, b, h in zip(pairs.left, pairs.right, hit, strict=True) if h}


def content_with(cosines: dict, n: int, dim: int = 64, seed: int = 0):
    """(n, dim) unit vectors: random (near-orthogonal) except the planted pairs, which get the given cosine."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1)
    for (i, j), c in cosines.items():
        noise = x[j] - (x[j] @ x[i]) * x[i]
        x[j] = c * x[i] + math.sqrt(1 - c * c) * noise / noise.norm()
    return x


# ---- masks ------------------------------------------------------------------------------------------
def test_masks_hit_exactly_the_planted_benign_pairs():
    # Catalogue of 7 items; batch rows -> items [0, 1, 2, 2, 3, 4, 5, 6]; all rows share their codes,
    # so every one of the 28 row pairs is a candidate.
    content = content_with({(0, 1): 0.99, (5, 6): 0.9}, n=7)  # 0~1 near-duplicates; 5~6 similar but not duplicates
    groups = ["a", "b", "c", "g1", "g1", "d", "e"]  # items 3 and 4 share a group
    item_index = torch.tensor([0, 1, 2, 2, 3, 4, 5, 6])
    batch = make_batch(torch.zeros(8, 3, dtype=torch.long), item_index=item_index)
    pairs = candidate_pairs(batch.out.codes)
    assert len(pairs) == 28
    assert pair_set(pairs, SelfPairMask()(pairs, batch)) == {(2, 3)}
    assert pair_set(pairs, NearDuplicateMask(0.98, content)(pairs, batch)) == {(0, 1), (2, 3)}  # the same item is its own duplicate
    assert pair_set(pairs, GroupMask(groups, num_items=7)(pairs, batch)) == {(2, 3), (4, 5)}

    rep = HammingMarginRepulsion(masks=[SelfPairMask(), NearDuplicateMask(0.98, content), GroupMask(groups, 7)], count_terms=True)
    rep.on_epoch_start(0, 0.0, torch.zeros(7, 3, dtype=torch.long))
    terms = rep(batch)
    assert rep.stats["rep/pairs"] == 28 and rep.stats["rep/masked_self"] == 1
    assert rep.stats["rep/masked_near_duplicate"] == 2 and rep.stats["rep/masked_group"] == 2
    assert rep.stats["rep/active"] == 28 - 3  # union of the three rules
    assert terms["count/rep_active"].item() == 25 and not terms["count/rep_active"].requires_grad
    rep(batch)  # counts are summed over the epoch's batches and reset at the next epoch
    assert rep.stats["rep/pairs"] == 56
    rep.on_epoch_start(1, 0.5, torch.zeros(7, 3, dtype=torch.long))
    assert "rep/pairs" not in rep.stats


def test_masked_pairs_get_no_repulsion():
    # Two items with identical latents and codes: a full collision; masking it as a group removes the loss.
    z = torch.ones(2, 4, requires_grad=True)
    batch = make_batch([[1, 2, 3], [1, 2, 3]], z=z)
    assert HammingMarginRepulsion()(batch)["rep"].item() > 0
    masked = HammingMarginRepulsion(masks=[GroupMask([7, 7])])(batch)["rep"]
    assert masked.item() == 0.0
    masked.backward()  # still part of the graph, with zero gradient
    assert torch.count_nonzero(z.grad) == 0


def test_group_column_errors():
    with pytest.raises(ValueError, match="3 values but the catalogue has 4"):
        GroupMask(["a", "b", "c"], num_items=4)
    with pytest.raises(ValueError, match=r"no group value \(items \[1, 3\]\)"):
        encode_groups(["a", None, "b", float("nan")])
    assert encode_groups(["a", None, "a", ""], allow_missing=True).tolist() == [0, -1, 0, -1]
    with pytest.raises(ValueError, match="item 1 has a value of type list"):
        encode_groups(["a", ["x"]])
    with pytest.raises(ValueError, match="invalid group number"):
        encode_groups(torch.tensor([0, -1, 2]))
    mask = GroupMask(["a", "a"])
    batch = make_batch([[0, 0], [0, 0]], item_index=[0, 5])
    with pytest.raises(ValueError, match=r"group column has 2 rows; batch item indices \[5\]"):
        mask(candidate_pairs(batch.out.codes), batch)
    # Missing groups are never masked by the rule.
    allowed = GroupMask([None, None], allow_missing=True)
    batch = make_batch([[0, 0], [0, 0]])
    assert not allowed(candidate_pairs(batch.out.codes), batch).any()


def test_content_errors():
    bad = torch.randn(4, 8)
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"NaN/inf in 1 row\(s\) \(items \[2\]\)"):
        NearDuplicateMask(content=bad)
    with pytest.raises(ValueError, match="has 4 rows but the catalogue has 5"):
        NearDuplicateMask(content=torch.randn(4, 8), num_items=5)
    batch = make_batch([[0], [0]])
    batch.x[1, 0] = float("inf")  # without a content table the batch's x is checked
    with pytest.raises(ValueError, match="NaN/inf"):
        NearDuplicateMask()(candidate_pairs(batch.out.codes), batch)


# ---- margin -----------------------------------------------------------------------------------------
def test_margin_grows_with_severity_and_repulsion_pushes_apart():
    rep = HammingMarginRepulsion(weight=2.0, m0=0.1, m1=0.3)
    assert torch.allclose(rep.margin(torch.tensor([0.0, 1 / 3, 2 / 3, 1.0])), torch.tensor([0.1, 0.2, 0.3, 0.4]))
    same = torch.ones(2, 4)
    # Identical latents (d = 0): the loss is weight * m^2, larger for the severer overlap.
    full = rep(make_batch([[1, 2, 3], [1, 2, 3]], z=same))["rep"].item()
    one_off = rep(make_batch([[1, 2, 3], [1, 2, 0]], z=same))["rep"].item()
    assert full == pytest.approx(2 * 0.4**2) and one_off == pytest.approx(2 * 0.3**2)
    # h = 2 > max_hamming: no candidate pair, no loss.
    assert rep(make_batch([[1, 2, 3], [1, 0, 0]], z=same))["rep"].item() == 0.0
    assert HammingMarginRepulsion(max_hamming=2)(make_batch([[1, 2, 3], [1, 0, 0]], z=same))["rep"].item() > 0
    # Pairs already farther apart than the margin cost nothing.
    apart = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    assert rep(make_batch([[1, 2, 3], [1, 2, 3]], z=apart))["rep"].item() == 0.0
    # A gradient step on z increases the cosine distance of a colliding pair.
    z = torch.tensor([[1.0, 0.1, 0, 0], [1.0, 0.0, 0.1, 0]], requires_grad=True)
    rep(make_batch([[1, 2, 3], [1, 2, 3]], z=z))["rep"].backward()
    before = 1 - torch.cosine_similarity(z[0], z[1], dim=0)
    with torch.no_grad():
        moved = z - 0.5 * z.grad
    assert 1 - torch.cosine_similarity(moved[0], moved[1], dim=0) > before


def test_repulsion_normalises_over_pairs_and_caps_pairs():
    # 6 identical items in one bucket: 15 pairs, the loss is a per-pair mean (not a sum).
    batch = make_batch([[0, 0]] * 6, z=torch.ones(6, 4))
    rep = HammingMarginRepulsion(m0=0.2, m1=0.0)
    assert rep(batch)["rep"].item() == pytest.approx(0.04)
    capped = HammingMarginRepulsion(m0=0.2, m1=0.0, max_pairs=4)
    assert capped(batch)["rep"].item() == pytest.approx(0.04)
    assert capped.stats["rep/subsampled_out"] == 11 and capped.stats["rep/active"] == 4


# ---- AdaSID gate ------------------------------------------------------------------------------------
def test_gate_relaxes_compatible_pairs_soft_and_hard():
    # Items 0~1 compatible (cos 0.95), items 2~3 incompatible (cos 0.2); both pairs fully collide.
    content = content_with({(0, 1): 0.95, (2, 3): 0.2}, n=4)
    batch = make_batch([[0, 0], [0, 0], [1, 1], [1, 1]])
    pairs = candidate_pairs(batch.out.codes)
    assert pair_set(pairs, torch.ones(len(pairs))) == {(0, 1), (2, 3)}
    soft = SemanticCompatibilityGate(theta_c=0.8, temperature=0.05, content=content)
    g = dict(zip(zip(pairs.left.tolist(), pairs.right.tolist(), strict=True), soft(pairs, batch, torch.ones(2, dtype=torch.bool)).tolist(), strict=True))
    assert g[(0, 1)] == pytest.approx(1 / (1 + math.exp(3.0)), abs=1e-4)  # sigmoid((0.8 - 0.95) / 0.05)
    assert g[(2, 3)] == pytest.approx(1 / (1 + math.exp(-12.0)), abs=1e-4)
    # Diagnostics: which overlaps the gate preserves, and how many another theta_c would relax.
    assert soft.last_counts == {"relaxed": 1.0, "relaxed_collisions": 1.0, "kappa_above_0.5": 1.0, "kappa_above_0.6": 1.0, "kappa_above_0.7": 1.0,
                                "kappa_above_0.8": 1.0, "kappa_above_0.9": 1.0}
    assert soft.last_values["kappa_relaxed"] == pytest.approx(0.95, abs=1e-5)
    assert soft.last_values["kappa_kept"] == pytest.approx(0.2, abs=1e-5)
    assert soft.last_values["kappa_mean"] == pytest.approx(0.575, abs=1e-5)
    assert "cf_relaxed" not in soft.last_values  # no CF embeddings given
    hard = SemanticCompatibilityGate(theta_c=0.8, hard=True, content=content)
    assert hard(pairs, batch, torch.ones(2, dtype=torch.bool)).tolist() == [0.0, 1.0]
    # In the repulsion, the hard gate removes the compatible pair's loss: only the incompatible pair pays.
    z = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0.9, 0.1]])
    batch = make_batch([[0, 0], [0, 0], [1, 1], [1, 1]], z=z)
    gated = HammingMarginRepulsion(m0=0.2, m1=0.0, pair_weights=[hard])(batch)["rep"].item()
    d23 = 1 - torch.cosine_similarity(z[2], z[3], dim=0).item()
    assert gated == pytest.approx((0.2 - d23) ** 2, rel=1e-4)
    ungated = HammingMarginRepulsion(m0=0.2, m1=0.0)(batch)["rep"].item()
    assert ungated == pytest.approx(((0.2 - 0) ** 2 + (0.2 - d23) ** 2) / 2, rel=1e-4)


def test_gate_can_mix_cf_similarity():
    content = content_with({(0, 1): 0.95}, n=3)
    cf = content_with({(0, 1): -0.9}, n=3, seed=1)  # content says compatible, CF strongly disagrees
    cf[2] = 0  # item 2 has no CF data
    batch = make_batch([[0], [0], [0]])
    pairs = candidate_pairs(batch.out.codes)
    gate = SemanticCompatibilityGate(theta_c=0.8, content=content, cf_embeddings=cf, cf_mix=0.5)
    kappa = gate.compatibility(pairs, batch)
    assert kappa[0].item() == pytest.approx(0.5 * 0.95 + 0.5 * -0.9, abs=1e-5)  # pair (0, 1) mixed
    plain = SemanticCompatibilityGate(theta_c=0.8, content=content).compatibility(pairs, batch)
    assert torch.allclose(kappa[1:], plain[1:])  # pairs with item 2 fall back to content only
    with pytest.raises(ValueError, match="cf_mix > 0 needs cf_embeddings"):
        SemanticCompatibilityGate(cf_mix=0.3)


def test_gate_can_keep_repelling_full_collisions():
    # Items 0~1 fully collide, items 2~3 differ at the last level; both pairs are compatible (cos 0.95).
    content = content_with({(0, 1): 0.95, (2, 3): 0.95}, n=4)
    batch = make_batch([[0, 0], [0, 0], [1, 1], [1, 2]])
    pairs = candidate_pairs(batch.out.codes)
    rows = list(zip(pairs.left.tolist(), pairs.right.tolist(), strict=True))
    assert set(rows) == {(0, 1), (2, 3)}
    active = torch.ones(len(pairs), dtype=torch.bool)
    relaxing = SemanticCompatibilityGate(theta_c=0.8, hard=True, content=content)
    assert relaxing(pairs, batch, active).tolist() == [0.0, 0.0]
    assert relaxing.last_counts["relaxed"] == 2.0 and relaxing.last_counts["relaxed_collisions"] == 1.0
    keeping = SemanticCompatibilityGate(theta_c=0.8, hard=True, content=content, relax_collisions=False)
    gate = dict(zip(rows, keeping(pairs, batch, active).tolist(), strict=True))
    assert gate == {(0, 1): 1.0, (2, 3): 0.0}  # the collision keeps its repulsion, the partial overlap is relaxed
    assert keeping.last_counts["relaxed"] == 1.0 and keeping.last_counts["relaxed_collisions"] == 0.0


def test_gate_records_co_interaction_of_relaxed_and_kept_pairs_without_changing_kappa():
    # Three colliding pairs: content cosines 0.95 / 0.5 / 0.2, CF cosines 0.7 / 0.1 / -0.3; with theta_c 0.8
    # only (0, 1) is relaxed. CF embeddings with cf_mix 0 feed the diagnostics, never kappa.
    content = content_with({(0, 1): 0.95, (2, 3): 0.5, (4, 5): 0.2}, n=6)
    cf = content_with({(0, 1): 0.7, (2, 3): 0.1, (4, 5): -0.3}, n=6, seed=1)
    batch = make_batch([[0, 0], [0, 0], [1, 1], [1, 1], [2, 2], [2, 2]])
    pairs = candidate_pairs(batch.out.codes)
    assert pair_set(pairs, torch.ones(len(pairs))) == {(0, 1), (2, 3), (4, 5)}
    active = torch.ones(len(pairs), dtype=torch.bool)
    with_cf = SemanticCompatibilityGate(theta_c=0.8, content=content, cf_embeddings=cf)
    without = SemanticCompatibilityGate(theta_c=0.8, content=content)
    assert torch.equal(with_cf(pairs, batch, active), without(pairs, batch, active))
    values = with_cf.last_values
    assert values["cf_relaxed"] == pytest.approx(0.7, abs=1e-5)
    assert values["cf_kept"] == pytest.approx((0.1 - 0.3) / 2, abs=1e-5)
    content_cos, cf_cos = [0.95, 0.5, 0.2], [0.7, 0.1, -0.3]
    assert values["cf_kappa_corr"] == pytest.approx(float(np.corrcoef(content_cos, cf_cos)[0, 1]), abs=1e-4)
    assert values["kappa_p50"] == pytest.approx(0.5, abs=1e-5)
    assert with_cf.last_counts["kappa_above_0.5"] == 2.0 and with_cf.last_counts["kappa_above_0.6"] == 1.0
    # Masked (inactive) pairs are left out of every diagnostic: mask (2, 3), only (4, 5) is kept.
    rows = list(zip(pairs.left.tolist(), pairs.right.tolist(), strict=True))
    with_cf(pairs, batch, torch.tensor([row != (2, 3) for row in rows]))
    assert with_cf.last_values["cf_kept"] == pytest.approx(-0.3, abs=1e-5)
    assert with_cf.last_values["kappa_kept"] == pytest.approx(0.2, abs=1e-5)
    assert with_cf.last_counts["kappa_above_0.5"] == 1.0


# ---- AdaSID load ------------------------------------------------------------------------------------
def test_load_weights_rise_in_a_congested_bucket():
    # Catalogue: 40 items crowd code (0, 0, 0); 2 items share (5, 5, 5); the rest are spread out.
    catalogue = torch.cat([torch.zeros(40, 3, dtype=torch.long), torch.full((2, 3), 5), torch.arange(60).view(20, 3) + 10])
    batch = make_batch([[0, 0, 0], [0, 0, 0], [5, 5, 5], [5, 5, 5]])
    pairs = candidate_pairs(batch.out.codes)
    load = CollisionLoadWeight(gamma=1.0)
    with pytest.raises(RuntimeError, match="on_epoch_start"):
        load(pairs, batch, torch.ones(len(pairs), dtype=torch.bool))
    load.on_epoch_start(0, 0.0, catalogue)
    a = load(pairs, batch, torch.ones(len(pairs), dtype=torch.bool))
    assert pair_set(pairs, torch.ones(len(pairs))) == {(0, 1), (2, 3)}
    # loads 40 and 2: a = n / mean(n), renormalised to mean 1 -> 40/21 and 2/21
    assert a.tolist() == pytest.approx([40 / 21, 2 / 21])
    assert a.mean().item() == pytest.approx(1.0)
    # The 10% most loaded pairs (here the one crowded pair) carry 40/21 of the total pressure 2.
    assert load.last_values["top_decile_share"] == pytest.approx((40 / 21) / 2)
    assert load.last_values["weight_min"] == pytest.approx(2 / 21)
    flat = CollisionLoadWeight(gamma=0.0)
    flat.on_epoch_start(0, 0.0, catalogue)
    assert flat(pairs, batch, torch.ones(2, dtype=torch.bool)).tolist() == [1.0, 1.0]
    # Refreshed each epoch: once the crowd is gone, both pairs weigh the same.
    load.on_epoch_start(1, 0.5, torch.cat([torch.zeros(2, 3, dtype=torch.long), torch.full((2, 3), 5)]))
    assert load(pairs, batch, torch.ones(2, dtype=torch.bool)).tolist() == pytest.approx([1.0, 1.0])


# ---- AdaSID schedule --------------------------------------------------------------------------------
def test_schedule_values():
    plan = ProgressSchedule(lambda_rep=2.0, lambda_cf=0.5, floor=0.1, cf_warmup=0.3)
    assert plan.rep_weight(0.0) == pytest.approx(2.0)
    assert plan.rep_weight(0.3) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(0.3 * math.pi))))
    assert plan.rep_weight(0.5) == pytest.approx(2.0 * 0.55)
    assert plan.rep_weight(1.0) == pytest.approx(0.2)
    assert [plan.cf_weight(t) for t in (0.0, 0.15, 0.3, 0.5, 1.0)] == pytest.approx([0.0, 0.25, 0.5, 0.5, 0.5])
    assert ProgressSchedule(lambda_cf=0.5, cf_warmup=0.0).cf_weight(0.0) == 0.5
    with pytest.raises(ValueError, match="progress must be in"):
        plan.rep_weight(1.5)
    with pytest.raises(ValueError, match="floor"):
        ProgressSchedule(floor=2.0)
    # The repulsion applies a schedule given as its weight.
    rep = HammingMarginRepulsion(weight=plan.rep_weight, m0=0.2, m1=0.0)
    same = torch.ones(2, 4)
    at_end = rep(make_batch([[0], [0]], z=same, progress=1.0))["rep"].item()
    assert at_end == pytest.approx(0.2 * 0.04)


# ---- contrastive ------------------------------------------------------------------------------------
def planted_cf(n=64, clusters=8, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=g)
    return centres[torch.arange(n) % clusters] + 0.1 * torch.randn(n, dim, generator=g)


def test_contrastive_loss_decreases_when_trained():
    cf = planted_cf()
    cf[60:] = 0  # four items without CF data
    reg = DualTowerContrastive(cf, latent_dim=8, weight=1.0, temperature=0.1, proj_dim=16, hidden_dim=32)
    latents = torch.nn.Parameter(torch.randn(64, 8, generator=torch.Generator().manual_seed(1)))
    optimizer = torch.optim.Adam([latents, *reg.parameters()], lr=1e-2)
    losses = []
    for _ in range(80):
        idx = torch.randperm(64, generator=torch.Generator().manual_seed(len(losses)))[:32]
        value = reg(make_batch(torch.zeros(32, 2, dtype=torch.long), z=latents[idx], item_index=idx))["cf"]
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        losses.append(value.item())
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
    assert reg.stats["cf/skipped"] > 0  # items 60-63 appeared in some batches and were skipped, counted
    assert reg.covered.sum().item() == 60


def test_contrastive_weight_zero_and_errors():
    cf = planted_cf()
    reg = DualTowerContrastive(cf, latent_dim=8, weight=lambda t: 0.0)
    z = torch.randn(8, 8, requires_grad=True)
    out = reg(make_batch(torch.zeros(8, 1, dtype=torch.long), z=z))
    assert out["cf"].item() == 0.0 and reg.stats["cf/raw"] > 0  # measured, not optimised
    nan_cf = cf.clone()
    nan_cf[3] = float("nan")
    with pytest.raises(ValueError, match=r"CF embeddings: NaN/inf in 1 row\(s\) \(items \[3\]\)"):
        DualTowerContrastive(nan_cf, latent_dim=8)
    with pytest.raises(ValueError, match="CF embeddings has 64 rows but the catalogue has 100"):
        DualTowerContrastive(cf, latent_dim=8, num_items=100)
    with pytest.raises(ValueError, match=r"batch item indices \[64, 70\]"):
        reg(make_batch(torch.zeros(3, 1, dtype=torch.long), z=torch.randn(3, 8), item_index=[1, 64, 70]))
    with pytest.raises(ValueError, match="cover no item"):
        DualTowerContrastive(torch.zeros(5, 4), latent_dim=8)


# ---- diversity --------------------------------------------------------------------------------------
def test_code_diversity_prefers_spread_latents_and_decreases_when_trained():
    g = torch.Generator().manual_seed(0)
    spread = torch.randn(256, 8, generator=g)
    clustered = torch.randn(1, 8, generator=g) + 0.05 * torch.randn(256, 8, generator=g)
    assert uniformity(spread) < uniformity(clustered)
    reg = CodeDiversity(weight=1.0)
    z = torch.nn.Parameter(clustered.clone())
    optimizer = torch.optim.Adam([z], lr=0.05)
    values = []
    for _ in range(50):
        value = reg(make_batch(torch.zeros(256, 2, dtype=torch.long), z=z))["div"]
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        values.append(value.item())
    assert values[-1] < values[0] - 1.0
    assert reg.stats["div/raw"] == pytest.approx(sum(values) / len(values), rel=1e-5)
