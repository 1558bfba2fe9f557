"""Fusion of several feature sources (genrec.tokenizer.fusion): packing, shapes, masking and placeholders,
the RQ-VAE with a learned fusion (fixed target), the fused wrapper for untrained quantisers, compatibility
content for AdaSID's gate and masks, and errors. Synthetic tensors only (fast)."""

from __future__ import annotations

import pytest
import torch

from genrec.tokenizer import RQVAE, RandomIDs, RQKMeans
from genrec.tokenizer.fusion import (
    ConcatFusion,
    FusedQuantizer,
    ProjectionFusion,
    SourceLayout,
    build_fusion,
    compatibility_content,
    pack_sources,
)
from genrec.tokenizer.regularizers import build_regularizers

pytestmark = pytest.mark.usefixtures("single_thread")

N, D_TEXT, D_ATTR = 240, 12, 20
SOURCES = [{"name": "text", "dim": D_TEXT}, {"name": "attrs", "dim": D_ATTR}]


def two_sources(n: int = N, seed: int = 0):
    """Clustered 'text' vectors and a sparse multi-hot 'attrs' source; attrs are missing for every 10th item."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(8, (n,), generator=g)
    text = (torch.randn(8, D_TEXT, generator=g) * 3)[labels] + 0.3 * torch.randn(n, D_TEXT, generator=g)
    attrs = torch.zeros(n, D_ATTR)
    attrs[torch.arange(n), labels] = 1.0  # one value per cluster ...
    attrs[torch.arange(n), 8 + torch.randint(12, (n,), generator=g)] = 1.0  # ... plus a random one
    present_attrs = torch.arange(n) % 10 != 3
    return text, attrs, torch.ones(n, dtype=torch.bool), present_attrs


def packed(n: int = N, seed: int = 0) -> torch.Tensor:
    text, attrs, pt, pa = two_sources(n, seed)
    return pack_sources(values=[text, attrs], present=[pt, pa])


def test_pack_and_split_round_trip_with_explicit_presence_flags():
    text, attrs, pt, pa = two_sources()
    attrs_dirty = attrs.clone()
    attrs_dirty[~pa] = 5.0  # whatever a missing row holds, packing writes zeros there
    x = pack_sources(values=[text, attrs_dirty], present=[pt, pa])
    layout = SourceLayout(["text", "attrs"], [D_TEXT, D_ATTR])
    assert x.shape == (N, layout.packed_dim) == (N, D_TEXT + D_ATTR + 2) and x.dtype == torch.float32
    blocks, present = layout.split(x)
    assert torch.equal(blocks[0], text) and torch.equal(blocks[1], attrs * pa[:, None])
    assert torch.equal(present[:, 0], pt) and torch.equal(present[:, 1], pa)
    assert torch.equal(x[:, -2:], torch.stack([pt, pa], dim=1).float())

    class Feature:  # anything with .values / .present packs (e.g. genrec.data.features.ItemFeatures)
        def __init__(self, values, present):
            self.values, self.present = values, present

    assert torch.equal(pack_sources([Feature(text, pt), Feature(attrs, pa)]), x)


@pytest.mark.parametrize("kind", ["concat", "projection"])
def test_fusion_shapes_and_placeholders_for_missing_rows(kind):
    x = packed()
    config = {"type": kind, "sources": SOURCES, **({"dim": 16} if kind == "projection" else {})}
    fusion = build_fusion(config)
    assert isinstance(fusion, ConcatFusion if kind == "concat" else ProjectionFusion)
    with pytest.raises(RuntimeError, match="fit_statistics"):
        fusion(x)
    report = fusion.fit_statistics(x)
    assert report["attrs"] == {"present": N - N // 10, "missing": N // 10, "scale": pytest.approx(report["attrs"]["scale"])}
    out = fusion(x)
    assert out.shape == (N, D_TEXT + D_ATTR if kind == "concat" else 16) and fusion.out_dim == out.shape[1]
    assert fusion.target(x).shape == (N, D_TEXT + D_ATTR) and fusion.input_dim == x.shape[1]
    missing = torch.nonzero(x[:, -1] == 0).flatten()
    # Every missing row of 'attrs' takes the same placeholder, whatever the packed zeros are.
    with torch.no_grad():
        for p in fusion.placeholders:
            p.add_(torch.randn(p.shape))  # a "trained" placeholder
    out = fusion(x)
    if kind == "concat":
        assert torch.allclose(out[missing, D_TEXT:], fusion.placeholders[1].expand(len(missing), -1))
    # Missing rows differ from present rows only through the attrs placeholder: change it and only they move.
    before = fusion(x).detach()
    with torch.no_grad():
        fusion.placeholders[1].add_(1.0)
    moved = (fusion(x).detach() - before).abs().sum(dim=1) > 0
    assert torch.equal(moved, x[:, -1] == 0)
    # The placeholder is learned: the gradient reaches it from missing rows only.
    fusion.zero_grad()
    fusion(x[missing]).sum().backward()
    assert fusion.placeholders[1].grad.abs().sum() > 0
    fusion.zero_grad()
    present_rows = torch.nonzero(x[:, -1] == 1).flatten()
    fusion(x[present_rows]).sum().backward()
    assert fusion.placeholders[1].grad is None or fusion.placeholders[1].grad.abs().sum() == 0


def test_normalisation_gives_every_source_the_same_total_variance_and_weights_scale_it():
    x = packed()
    fusion = ConcatFusion(SOURCES, weights={"attrs": 2.0}, learned_placeholder=False)
    fusion.fit_statistics(x)
    t = fusion.target(x)
    present = x[:, -1] == 1
    text_tv = t[:, :D_TEXT].pow(2).sum(dim=1).mean()
    attrs_tv = (t[present, D_TEXT:] - t[present, D_TEXT:].mean(dim=0)).pow(2).sum(dim=1).mean()
    total = (D_TEXT + D_ATTR) / 2
    assert float(text_tv) == pytest.approx(total, rel=1e-4)  # D / S, independent of the source's dimension
    assert float(attrs_tv) == pytest.approx(4 * total, rel=1e-4)  # weight 2 -> 4x the variance
    # Missing rows: zero block in the target (= the catalogue mean in centred units); fixed placeholders equal it.
    assert t[~present, D_TEXT:].abs().max() == 0
    assert torch.equal(fusion(x), t) and not list(fusion.parameters())
    # Per-source L2 normalisation: scaling one source's raw vectors changes nothing.
    text, attrs, pt, pa = two_sources()
    assert torch.allclose(fusion.target(pack_sources(values=[7 * text, attrs], present=[pt, pa])), t, atol=1e-5)


def test_compatibility_content_on_one_source_or_on_the_fusion():
    x = packed()
    layout = SourceLayout.from_config(SOURCES)
    text, attrs, _, pa = two_sources()
    on_text = compatibility_content(x, layout, "text")
    assert torch.allclose(on_text, torch.nn.functional.normalize(text, dim=1))
    on_attrs = compatibility_content(x, layout, "attrs")
    assert on_attrs[~pa].abs().max() == 0  # missing: zero row, cosine 0 with everything (never "compatible")
    fused = compatibility_content(x, layout, "fused", weights=[1.0, 1.0])
    i, j = torch.nonzero(pa).flatten()[:2].tolist()  # both have both sources: fused cosine = mean of the per-source cosines
    cos = lambda m: float(torch.nn.functional.cosine_similarity(m[i:i + 1], m[j:j + 1]))  # noqa: E731
    assert cos(fused) == pytest.approx((cos(on_text) + cos(on_attrs)) / 2, abs=1e-5)
    with pytest.raises(ValueError, match=r"unknown source 'image'; sources: \['text', 'attrs'\]"):
        compatibility_content(x, layout, "image")

    # The AdaSID gate and the near-duplicate mask take it as their content table.
    regs = build_regularizers("adasid-no-contrastive", content=on_attrs, num_items=N, latent_dim=4)
    assert regs


@pytest.mark.parametrize("kind", ["concat", "projection"])
def test_rqvae_learns_its_fusion_against_a_fixed_target(kind):
    x = packed()
    fusion = {"type": kind, "sources": SOURCES, **({"dim": 16} if kind == "projection" else {})}
    q = RQVAE(x.shape[1], codebook_sizes=(8, 8), latent_dim=4, hidden_dims=(32,), seed=0, fusion=fusion)
    assert q.encoder[0].in_features == (16 if kind == "projection" else D_TEXT + D_ATTR)
    assert q.decoder[-1].out_features == D_TEXT + D_ATTR
    fusion_before = {k: v.clone() for k, v in q.fusion.state_dict().items()}
    history = q.fit(x, epochs=6, batch_size=64, lr=1e-2)
    assert history["recon"][-1] < history["recon"][0]
    # The fusion's parameters were trained, its statistics fitted, and the target still equals the fixed concat.
    changed = [k for k, v in q.fusion.state_dict().items() if not torch.equal(v, fusion_before[k])]
    assert "placeholders.1" in changed and "center_0" in changed and bool(q.fusion.fitted)
    fixed = ConcatFusion(SOURCES, learned_placeholder=False)
    fixed.load_state_dict({k: v for k, v in q.fusion.state_dict().items() if k in fixed.state_dict()}, strict=False)
    fixed.fitted.fill_(True)
    assert torch.allclose(q.standardize(x), fixed.target(x))
    assert float(q.mean.abs().max()) == 0 and float((q.std - 1).abs().max()) == 0
    # The fused input does not collapse: distinct items keep distinct encoder outputs.
    z = q.encoder(q.fusion(x)).detach()
    assert float(z.std(dim=0).mean()) > 1e-3
    codes = q.encode(x)
    assert codes.shape == (N, 2) and torch.unique(codes, dim=0).shape[0] > 8
    # Config + state rebuild the same quantiser (the fusion included); a plain RQ-VAE's config has no 'fusion'.
    again = RQVAE.from_config(q.get_config())
    again.load_state_dict(q.state_dict())
    assert torch.equal(again.encode(x), codes) and q.get_config()["fusion"]["type"] == kind
    assert "fusion" not in RQVAE(8, codebook_sizes=(4,), latent_dim=2, hidden_dims=(4,)).get_config()
    assert q.reconstruction_error(x) == pytest.approx(again.reconstruction_error(x))


def test_rqvae_with_fusion_takes_regularisers_reading_a_chosen_source():
    x = packed()
    layout = SourceLayout.from_config(SOURCES)
    content = compatibility_content(x, layout, "text")
    regs = build_regularizers("adasid-no-contrastive", content=content, num_items=N, latent_dim=4)
    q = RQVAE(x.shape[1], codebook_sizes=(4, 4), latent_dim=4, hidden_dims=(32,), seed=0, fusion={"type": "concat", "sources": SOURCES})
    history = q.fit(x, regularizers=regs, epochs=3, batch_size=64)
    assert len(history["rep"]) == 3 and "rep/pairs" in history


@pytest.mark.parametrize("inner", ["rq_kmeans", "random"])
def test_untrained_quantisers_behind_a_fixed_concat(inner):
    x = packed()
    quantizer = RQKMeans((8, 8), seed=0) if inner == "rq_kmeans" else RandomIDs((8, 8), seed=0)
    fq = FusedQuantizer({"type": "concat", "sources": SOURCES, "learned_placeholder": False}, quantizer)
    history = fq.fit(x)
    assert history["fusion"]["attrs"]["missing"] == N // 10
    codes = fq.encode(x, batch_size=50)
    assert codes.shape == (N, 2)
    if inner == "rq_kmeans":
        assert torch.equal(codes, quantizer.encode(fq.fusion(x)))
        assert fq.reconstruction_error(x) == pytest.approx(quantizer.reconstruction_error(fq.fusion(x)))
    else:
        assert torch.equal(codes, RandomIDs((8, 8), seed=0).encode(x)) and not hasattr(fq, "reconstruction_error")
    again = FusedQuantizer.from_config(fq.get_config())
    again.load_state_dict(fq.state_dict())
    assert torch.equal(again.encode(x), codes) and fq.get_config()["quantizer"]["method"] == inner


def test_errors_are_clear():
    x = packed()
    layout = SourceLayout.from_config(SOURCES)
    with pytest.raises(ValueError, match=r"packed input must be \(B, 34\) = sources \{'text': 12, 'attrs': 20\} \+ 2 presence"):
        layout.split(x[:, :-1])
    bad = x.clone()
    bad[5, -1] = 0.5
    with pytest.raises(ValueError, match=r"presence flags .* rows \[5\]"):
        layout.split(bad)
    bad = x.clone()
    bad[7, :D_TEXT] = 0
    with pytest.raises(ValueError, match=r"source 'text' is flagged present but all-zero in rows \[7\]"):
        layout.split(bad)
    bad = x.clone()
    bad[9, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN/inf in 1 row\(s\): \[9\]"):
        layout.split(bad)
    all_missing = x.clone()
    all_missing[:, -1] = 0
    with pytest.raises(ValueError, match="source 'attrs' is missing for every item"):
        ConcatFusion(SOURCES).fit_statistics(all_missing)
    with pytest.raises(ValueError, match=r"fusion weights name unknown source\(s\) \['image'\]"):
        ConcatFusion(SOURCES, weights={"image": 2.0})
    with pytest.raises(ValueError, match="unknown fusion type 'sum'"):
        build_fusion({"type": "sum", "sources": SOURCES})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['dim'\]"):
        build_fusion({"type": "concat", "sources": SOURCES, "dim": 8})
    with pytest.raises(ValueError, match="source names must be distinct"):
        SourceLayout(["a", "a"], [2, 2])
    with pytest.raises(ValueError, match="'fused' is reserved"):
        SourceLayout(["fused"], [2])
    with pytest.raises(ValueError, match="has learned parameters, which a wrapped quantiser cannot train"):
        FusedQuantizer({"type": "projection", "sources": SOURCES}, RQKMeans((4,)))
    with pytest.raises(ValueError, match=r"input_dim=30 but the fusion's packed input is 34 wide"):
        RQVAE(30, codebook_sizes=(4,), fusion={"type": "concat", "sources": SOURCES})
    q = RQVAE(x.shape[1], codebook_sizes=(4,), latent_dim=2, hidden_dims=(8,), fusion={"type": "concat", "sources": SOURCES})
    with pytest.raises(ValueError, match="needs the raw packed input"):
        q.forward_standardized(torch.zeros(2, D_TEXT + D_ATTR))
