"""The untrained baselines: Random IDs and RQ-KMeans."""

import pytest
import torch

from genrec.tokenizer import RandomIDs, Regularizer, RQKMeans, tokenizer_metrics

pytestmark = pytest.mark.usefixtures("single_thread")


def two_scale(n=600, d=6, seed=0):
    """8 coarse clusters plus one of 4 small offsets shared by all of them: residual k-means should find both."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(8, d, generator=g) * 10
    fine = torch.randn(4, d, generator=g)
    c, f = torch.arange(n) % 8, (torch.arange(n) // 8) % 4
    return coarse[c] + fine[f] + 0.05 * torch.randn(n, d, generator=g), c, f


def test_random_ids_are_fixed_by_seed_and_row():
    x = torch.randn(1000, 4)
    q = RandomIDs((8, 16, 4), seed=3)
    assert q.fit(x) == {}
    codes = q.encode(x)
    assert codes.shape == (1000, 3) and codes.dtype == torch.long
    assert torch.equal(codes, RandomIDs((8, 16, 4), seed=3).encode(torch.zeros(1000, 4)))  # values do not matter
    assert torch.equal(codes[:100], q.encode(x[:100]))  # row i's codes do not depend on the catalogue size
    assert not torch.equal(codes, RandomIDs((8, 16, 4), seed=4).encode(x))
    m = tokenizer_metrics(codes, (8, 16, 4))
    assert m["utilization"] == [1.0, 1.0, 1.0] and min(m["normalized_entropy"]) > 0.97
    with pytest.raises(ValueError, match="not trained"):
        q.fit(x, regularizers=[torch.nn.Identity()])
    with pytest.raises(ValueError, match="positive sizes"):
        RandomIDs((8, 0))


def test_rq_kmeans_finds_both_scales():
    x, coarse, fine = two_scale()
    q = RQKMeans((8, 4), seed=0)
    history = q.fit(x)
    codes = q.encode(x)
    assert history["residual_mse"][1] < history["residual_mse"][0] < 0.1
    # level 0 = the coarse cluster and level 1 = the offset, each up to relabelling
    for level, truth in ((0, coarse), (1, fine)):
        labels = [codes[truth == t, level].unique() for t in range(int(truth.max()) + 1)]
        assert all(found.numel() == 1 for found in labels) and len(set(int(f) for f in labels)) == len(labels)
    assert tokenizer_metrics(codes, (8, 4))["num_distinct_sids"] == 32
    assert q.reconstruction_error(x) == pytest.approx(history["residual_mse"][1], rel=1e-4)


def test_rq_kmeans_is_deterministic_and_batch_independent():
    x, _, _ = two_scale(n=400)
    a, b = RQKMeans((8, 8), seed=1), RQKMeans((8, 8), seed=1)
    a.fit(x)
    b.fit(x)
    codes = a.encode(x)
    assert torch.equal(codes, b.encode(x)) and torch.equal(codes, a.encode(x, batch_size=37))
    sampled = RQKMeans((8, 8), seed=1, max_fit_points=100)
    sampled.fit(x)
    assert sampled.encode(x).shape == (400, 2)  # fitted on 100 items, encodes all


def test_rq_kmeans_errors():
    x, _, _ = two_scale(n=50)
    with pytest.raises(ValueError, match=r"codebook size 64 at level 1 is larger than the catalogue \(50 items\)"):
        RQKMeans((4, 64)).fit(x)
    bad = x.clone()
    bad[4, 2] = float("inf")
    with pytest.raises(ValueError, match=r"NaN/inf in 1 row\(s\): \[4\]"):
        RQKMeans((4,)).fit(bad)

    class Dummy(Regularizer):
        def forward(self, batch):
            return {}

    with pytest.raises(ValueError, match="regularisers cannot be attached"):
        RQKMeans((4,)).fit(x, regularizers=[Dummy()])
