"""Random IDs, RQ-KMeans, RQ-VAE (k-means init, dead-code reset, regulariser hook) on synthetic catalogues."""

import pytest
import torch

from genrec.tokenizer import RQVAE, QuantizerOutput, RandomIDs, Regularizer, RQKMeans, build_quantizer
from genrec.tokenizer.kmeans import kmeans


def clustered(n=512, d=16, clusters=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, d, generator=g) * 4
    labels = torch.randint(clusters, (n,), generator=g)
    return centres[labels] + 0.1 * torch.randn(n, d, generator=g), labels


def test_kmeans_recovers_planted_clusters_and_rejects_bad_input():
    x, labels = clustered(n=400, clusters=5)
    _, assign = kmeans(x, 5, seed=0)
    # same partition up to relabelling: each planted cluster maps to one k-means cluster
    for c in range(5):
        assert assign[labels == c].unique().numel() == 1
    with pytest.raises(ValueError, match="must not exceed the number of items"):
        kmeans(x[:3], 5)
    bad = x.clone()
    bad[7, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN/inf.*\[7\]"):
        kmeans(bad, 2)


def test_random_ids_and_rq_kmeans_are_deterministic():
    x, _ = clustered()
    r = RandomIDs((8, 8, 8), seed=3)
    assert torch.equal(r.encode(x), RandomIDs((8, 8, 8), seed=3).encode(x))
    assert r.encode(x).max() < 8
    q = RQKMeans((8, 8), seed=0)
    q.fit(x)
    codes = q.encode(x)
    assert torch.equal(codes, q.encode(x, batch_size=37))  # batching does not change codes
    q2 = RQKMeans((8, 8), seed=0)
    q2.load_state_dict(q.state_dict())
    assert torch.equal(q2.encode(x), codes)
    assert isinstance(build_quantizer("rq_kmeans", codebook_sizes=(4,)), RQKMeans)
    with pytest.raises(ValueError, match="unknown tokenizer method 'nope'"):
        build_quantizer("nope")


class CountingRegularizer(Regularizer):
    """A dummy term: pulls z toward 0 with a learnable scale; counts calls."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(1.0))
        self.calls, self.epochs_seen = 0, []

    def on_epoch_start(self, epoch, progress, catalogue_codes):
        self.epochs_seen.append((epoch, progress, tuple(catalogue_codes.shape)))

    def forward(self, batch):
        assert isinstance(batch.out, QuantizerOutput) and batch.item_index.shape[0] == batch.x.shape[0]
        self.calls += 1
        return {"dummy": (self.scale - 2.0) ** 2 + 0 * batch.out.z.sum()}


def test_rqvae_trains_calls_regularizers_and_round_trips():
    x, _ = clustered(n=512, d=16)
    q = RQVAE(16, codebook_sizes=(8, 8, 8), latent_dim=8, hidden_dims=(32,), seed=0)
    reg = CountingRegularizer()
    hist = q.fit(x, regularizers=[reg], epochs=6, batch_size=128, lr=3e-3)
    assert hist["recon"][-1] < hist["recon"][0]
    assert reg.calls == 6 * 4 and [e for e, _, _ in reg.epochs_seen] == list(range(6))
    assert reg.epochs_seen[0][1] == 0.0 and reg.epochs_seen[-1][1] == 1.0 and reg.epochs_seen[0][2] == (512, 3)
    assert len(hist["dummy"]) == 6 and hist["dummy"][-1] < hist["dummy"][0]  # logged per epoch and optimised
    assert abs(reg.scale.item() - 2.0) < 1.0
    codes = q.encode(x)
    assert torch.equal(codes, q.encode(x, batch_size=50))
    q2 = RQVAE(**{k: v for k, v in q.get_config().items() if k != "method"})
    q2.load_state_dict(q.state_dict())
    assert torch.equal(q2.encode(x), codes)


def test_dead_code_reset_revives_unused_codes():
    x, _ = clustered(n=256, d=8, clusters=4)

    def run(reset: bool):
        q = RQVAE(8, codebook_sizes=(16,), latent_dim=4, hidden_dims=(16,), seed=0)
        with torch.no_grad():
            q.initialized.fill_(True)  # skip k-means init: far-away random codebooks leave most codes dead
            q.codebooks[0].mul_(100)
        return q.fit(x, epochs=2, batch_size=64, dead_code_reset=reset)

    with_reset, without = run(True), run(False)
    assert with_reset["dead_codes_reset"][0] > 0 and without["dead_codes_reset"] == [0, 0]
    assert with_reset["utilization"][0][0] > without["utilization"][0][0]


def test_rqvae_bad_input():
    x, _ = clustered(n=64, d=8)
    with pytest.raises(ValueError, match="larger than the catalogue"):
        RQVAE(8, codebook_sizes=(128,)).fit(x, epochs=1)
    bad = x.clone()
    bad[3] = float("inf")
    with pytest.raises(ValueError, match=r"NaN/inf in 1 row\(s\): \[3\]"):
        RQVAE(8, codebook_sizes=(4,)).fit(bad, epochs=1)
    with pytest.raises(ValueError, match="dimension 8"):
        RQVAE(16, codebook_sizes=(4,)).fit(x, epochs=1)
