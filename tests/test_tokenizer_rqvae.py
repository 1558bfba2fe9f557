"""RQ-VAE on small synthetic clustered catalogues: training, determinism, regulariser hook, resets, errors."""

import pytest
import torch

from genrec.tokenizer import RQVAE, QuantizerOutput, Regularizer, RegularizerBatch
from genrec.tokenizer.rq_vae import sinkhorn_assign

pytestmark = pytest.mark.usefixtures("single_thread")


def clustered(n=512, d=32, clusters=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, d, generator=g) * 3 + 1.0
    labels = torch.randint(clusters, (n,), generator=g)
    return centres[labels] + 0.3 * torch.randn(n, d, generator=g)


def small_rqvae(d=32, sizes=(16, 16, 16), **kwargs):
    return RQVAE(d, codebook_sizes=sizes, latent_dim=8, hidden_dims=(64, 32), **kwargs)


def test_training_lowers_reconstruction_and_logs_every_term():
    x = clustered()
    q = small_rqvae(seed=0)
    before = q.reconstruction_error(x)
    history = q.fit(x, epochs=8, batch_size=64, lr=1e-2)
    for key in ("loss", "recon", "codebook", "commit", "collision_rate", "utilization", "dead_codes_reset", "seconds"):
        assert len(history[key]) == 8, key
    assert history["recon"][-1] < 0.7 * history["recon"][0]
    for epoch in range(8):
        parts = history["recon"][epoch] + history["codebook"][epoch] + history["commit"][epoch]
        assert history["loss"][epoch] == pytest.approx(parts, rel=1e-5)
        assert len(history["utilization"][epoch]) == 3 and all(0 < u <= 1 for u in history["utilization"][epoch])
    assert q.reconstruction_error(x) < 0.7 * before
    assert all(0 <= rate < 1 for rate in history["collision_rate"])
    assert not q.training


def test_forward_output_and_straight_through_gradient():
    x = clustered(n=300)
    q = small_rqvae(seed=0)
    q.fit(x, epochs=1, batch_size=100)
    q.zero_grad(set_to_none=True)
    out = q(x[:10])
    assert isinstance(out, QuantizerOutput)
    assert out.z.shape == out.zq.shape == (10, 8) and out.x_hat.shape == (10, 32)
    assert out.codes.shape == (10, 3) and out.codes.dtype == torch.long and int(out.codes.max()) < 16
    assert len(out.residuals) == 3 and torch.equal(out.residuals[0], out.z)
    assert set(out.losses) == {"recon", "codebook", "commit"}
    assert torch.equal(out.codes, q.encode(x[:10]))
    out.losses["recon"].backward()  # through the decoder, the straight-through estimator, into the encoder
    assert q.encoder[0].weight.grad.abs().sum() > 0
    assert all(book.grad is None for book in q.codebooks)  # codebooks learn from the codebook term only


def test_deterministic_given_the_seed_and_batch_size_independent():
    x = clustered(n=400)
    rng_before = torch.get_rng_state()
    a, b = small_rqvae(seed=7), small_rqvae(seed=7)
    history_a = a.fit(x, epochs=3, batch_size=64)
    history_b = b.fit(x, epochs=3, batch_size=64)
    assert torch.equal(torch.get_rng_state(), rng_before)  # construction and fit leave the global RNG alone
    assert history_a["loss"] == history_b["loss"]
    codes = a.encode(x)
    assert torch.equal(codes, b.encode(x))
    assert torch.equal(codes, a.encode(x, batch_size=33))
    c = small_rqvae(seed=8)
    c.fit(x, epochs=3, batch_size=64)
    assert not torch.equal(codes, c.encode(x))


def test_state_dict_round_trip_gives_identical_codes():
    x = clustered(n=300)
    q = small_rqvae(seed=0, sinkhorn_last_level=True)
    q.fit(x, epochs=2, batch_size=100)
    again = RQVAE.from_config(q.get_config())
    again.load_state_dict(q.state_dict())
    assert torch.equal(again.encode(x), q.encode(x))
    assert bool(again.initialized) and torch.equal(again.mean, q.mean)


class ScaleRegularizer(Regularizer):
    """Dummy term (scale - 2)^2 with a learnable scale, plus a tiny pull of z to 0; records every call."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.0))
        self.batches: list[RegularizerBatch] = []
        self.epoch_starts: list[tuple[int, float, torch.Tensor]] = []

    def on_epoch_start(self, epoch, progress, catalogue_codes):
        self.epoch_starts.append((epoch, progress, catalogue_codes.clone()))

    def forward(self, batch):
        self.batches.append(batch)
        return {"scale_term": (self.scale - 2.0) ** 2, "z_norm": 1e-4 * batch.out.z.pow(2).mean()}


def test_regularizers_are_called_logged_and_optimised():
    x = clustered(n=512)
    q = small_rqvae(seed=0)
    reg = ScaleRegularizer()
    history = q.fit(x, regularizers=[reg], epochs=5, batch_size=128, lr=0.05)
    assert len(reg.batches) == 5 * 4  # every batch of every epoch
    assert [e for e, _, _ in reg.epoch_starts] == list(range(5))
    assert [p for _, p, _ in reg.epoch_starts] == [0.0, 0.25, 0.5, 0.75, 1.0]
    first = reg.batches[0]
    assert first.epoch == 0 and first.progress == 0.0 and first.item_index.shape == (128,)
    assert torch.allclose(first.x, q.standardize(x[first.item_index]))  # standardised inputs of those catalogue rows
    seen = torch.cat([b.item_index for b in reg.batches[:4]])
    assert torch.equal(seen.sort().values, torch.arange(512))  # each item once per epoch
    for epoch, _, codes in reg.epoch_starts:
        assert codes.shape == (512, 3) and codes.dtype == torch.long
        if epoch > 0:  # the codes handed over are the catalogue's codes after the previous epoch
            assert 1 - torch.unique(codes, dim=0).shape[0] / 512 == pytest.approx(history["collision_rate"][epoch - 1])
    assert len(history["scale_term"]) == 5 and len(history["z_norm"]) == 5
    assert history["scale_term"][-1] < 0.5 * history["scale_term"][0]
    assert 0.5 < reg.scale.item() < 2.5  # its parameter (initially 0) is in the optimiser
    base = [history[k][-1] for k in ("recon", "codebook", "commit", "scale_term", "z_norm")]
    assert history["loss"][-1] == pytest.approx(sum(base), rel=1e-5)


def test_regularizer_term_names_must_be_new():
    class Clash(Regularizer):
        def forward(self, batch):
            return {"recon": batch.out.z.sum() * 0}

    with pytest.raises(ValueError, match="Clash returned a term named 'recon'"):
        small_rqvae().fit(clustered(n=64), regularizers=[Clash()], epochs=1)


def test_dead_code_reset_revives_unused_codes():
    x = clustered(n=256, d=8, clusters=4)

    def run(reset: bool):
        q = RQVAE(8, codebook_sizes=(16,), latent_dim=4, hidden_dims=(16,), seed=0)
        with torch.no_grad():
            q.initialized.fill_(True)  # skip the k-means init: far-away codes stay dead without a reset
            q.codebooks[0].add_(torch.linspace(0, 100, 16)[:, None])
        return q.fit(x, epochs=2, batch_size=64, dead_code_reset=reset)

    with_reset, without = run(True), run(False)
    assert with_reset["dead_codes_reset"][0] >= 10 and with_reset["dead_codes_reset"][1] == 0  # no reset after the last epoch
    assert without["dead_codes_reset"] == [0, 0]
    assert with_reset["utilization"][0][0] > 2 * without["utilization"][0][0]


def test_sinkhorn_balances_a_skewed_assignment():
    g = torch.Generator().manual_seed(0)
    positions = torch.rand(256, 1, generator=g)
    codes = torch.linspace(0.0, 0.2, 8)[:, None]  # every code sits at the low end: most items are nearest to the last one
    distances = (positions - codes.T) ** 2
    nearest = torch.bincount(distances.argmin(dim=1), minlength=8)
    balanced = torch.bincount(sinkhorn_assign(distances), minlength=8)
    assert nearest.max() > 150
    assert balanced.max() <= 64 and (balanced > 0).all()
    x = clustered(n=256)
    q = small_rqvae(seed=0, sinkhorn_last_level=True)
    history = q.fit(x, epochs=2, batch_size=64)
    assert history["recon"][-1] < history["recon"][0]


def test_bad_input_errors():
    x = clustered(n=64, d=8)
    with pytest.raises(ValueError, match=r"codebook size 128 at level 1 is larger than the catalogue \(64 items\)"):
        RQVAE(8, codebook_sizes=(4, 128)).fit(x, epochs=1)
    bad = x.clone()
    bad[3, 0] = float("nan")
    bad[10, 5] = float("-inf")
    with pytest.raises(ValueError, match=r"embeddings: NaN/inf in 2 row\(s\): \[3, 10\]"):
        RQVAE(8, codebook_sizes=(4,)).fit(bad, epochs=1)
    with pytest.raises(ValueError, match="dimension 8, the RQ-VAE was built for input_dim=16"):
        RQVAE(16, codebook_sizes=(4,)).fit(x, epochs=1)
    with pytest.raises(ValueError, match="epochs and batch_size must be >= 1"):
        RQVAE(8, codebook_sizes=(4,)).fit(x, epochs=0)


@pytest.mark.slow
@pytest.mark.parametrize("regularized", [False, True])
def test_fits_of_one_seed_are_identical_with_two_threads(regularized):
    """Two fits of one seed give the same weights with 2 torch threads, as on the CLI (issue: Beauty fits differed).

    The backward of ``codebook[idx]`` (and of ``unit[left]`` in the repulsion) accumulated repeated rows
    in a thread-dependent order; with 1 thread the bug hides, so this test runs 2 threads on batches large
    enough (1024 x 32 gradient rows) for torch to split the accumulation.
    """
    from genrec.tokenizer.regularizers import build_regularizers

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = clustered(n=3000, d=64)
        fits = []
        for _ in range(2):
            model = RQVAE(input_dim=64, codebook_sizes=(64, 64, 64), latent_dim=32, hidden_dims=(64,), seed=3)
            regs = build_regularizers("quasid-no-contrastive", content=x, num_items=len(x), latent_dim=32) if regularized else None
            model.fit(x, regularizers=regs, epochs=3, batch_size=1024)
            fits.append(model.state_dict())
    finally:
        torch.set_num_threads(before)
    different = [k for k in fits[0] if not torch.equal(fits[0][k], fits[1][k])]
    assert not different, f"weights differ between two fits of one seed: {different}"
