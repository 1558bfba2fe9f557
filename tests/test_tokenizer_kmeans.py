"""k-means: planted clusters, determinism, chunking, empty clusters, bad input."""

import pytest
import torch

from genrec.tokenizer.kmeans import kmeans, kmeans_plus_plus, nearest

pytestmark = pytest.mark.usefixtures("single_thread")


def planted(n=600, d=8, clusters=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, d, generator=g) * 5
    labels = torch.arange(n) % clusters
    return centres[labels] + 0.2 * torch.randn(n, d, generator=g), labels, centres


def test_recovers_planted_clusters():
    x, labels, centres = planted()
    centroids, assign = kmeans(x, 6, seed=0)
    # Same partition up to relabelling: every planted cluster maps to exactly one fitted cluster, and back.
    mapping = {}
    for c in range(6):
        found = assign[labels == c].unique()
        assert found.numel() == 1
        mapping[c] = int(found)
    assert len(set(mapping.values())) == 6
    for c, fitted in mapping.items():
        assert torch.dist(centroids[fitted], centres[c]) < 0.2


def test_deterministic_by_seed_and_chunk_independent():
    x, _, _ = planted(n=500, clusters=10)
    c1, a1 = kmeans(x, 12, seed=3)
    c2, a2 = kmeans(x, 12, seed=3, chunk_size=64)
    assert torch.equal(a1, a2) and torch.allclose(c1, c2, atol=1e-5)
    idx, dist = nearest(x, c1, chunk_size=13)
    brute = torch.cdist(x, c1).pow(2)
    assert torch.equal(idx, brute.argmin(dim=1))
    assert torch.allclose(dist, brute.min(dim=1).values, atol=1e-3)


def test_kmeans_plus_plus_picks_distinct_points_when_possible():
    x = torch.tensor([[0.0, 0.0]] * 5 + [[10.0, 0.0]] * 5 + [[0.0, 10.0]])
    seeds = kmeans_plus_plus(x, 3, torch.Generator().manual_seed(0))
    assert torch.unique(seeds, dim=0).shape[0] == 3  # duplicates of a chosen point have zero probability


def test_empty_cluster_is_reseeded_from_the_farthest_point():
    x = torch.cat([torch.zeros(20, 2), torch.full((1, 2), 6.0), torch.full((1, 2), 7.0)])
    # The second starting centroid is far from every point: its cluster is empty after the first assignment.
    init = torch.tensor([[0.0, 0.0], [100.0, 100.0]])
    centroids, assign = kmeans(x, 2, iters=5, init=init)
    assert torch.bincount(assign, minlength=2).min() > 0
    assert sorted(torch.bincount(assign).tolist()) == [2, 20]
    assert torch.allclose(centroids[assign[-1]], torch.tensor([6.5, 6.5]))


def test_bad_input_errors():
    x, _, _ = planted(n=30)
    with pytest.raises(ValueError, match="cannot fit 31 clusters to 30 points"):
        kmeans(x, 31)
    bad = x.clone()
    bad[7, 0] = float("nan")
    bad[11, 3] = float("inf")
    bad[12, 4], bad[12, 5] = float("inf"), -float("inf")  # the row sum is NaN
    bad[20] = 3e38  # finite values whose row sum overflows: must not be reported
    with pytest.raises(ValueError, match=r"NaN/inf in 3 row\(s\): \[7, 11, 12\]"):
        kmeans(bad, 2)
    with pytest.raises(ValueError, match="2-D"):
        kmeans(x[0], 2)
    with pytest.raises(ValueError, match="init must have shape"):
        kmeans(x, 2, init=torch.zeros(3, 8))
