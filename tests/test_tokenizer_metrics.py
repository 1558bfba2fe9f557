"""Tokenizer-quality metrics on planted catalogues (hand-computed values) and against brute force."""

import itertools
import math

import pytest
import torch

from genrec.tokenizer import tokenizer_metrics

pytestmark = pytest.mark.usefixtures("single_thread")

# 10 items, L = 3, K = (4, 4, 8).
#   items 0, 1, 2 share (0,0,0); items 3, 4 share (1,2,3); item 5 = (0,0,1) differs from 0-2 in one level;
#   item 8 = (3,3,2) differs from item 7 = (3,3,3) in one level; items 6 and 9 are far from everything.
PLANTED_CODES = torch.tensor([[0, 0, 0], [0, 0, 0], [0, 0, 0], [1, 2, 3], [1, 2, 3], [0, 0, 1], [2, 1, 0], [3, 3, 3], [3, 3, 2], [2, 2, 2]])
PLANTED_SIZES = (4, 4, 8)
E = torch.eye(4)
# 0-2 point along e1 and item 5 opposite (3 distant pairs sharing 2 codes); the colliding pair 3, 4 is
# opposite (distant); 7 and 8 coincide (not distant); 6 and 9 are opposite along e4.
PLANTED_X = torch.stack([E[0], E[0], E[0], E[2], -E[2], -E[0], E[3], E[1], E[1], -E[3]])


def entropy(counts):
    p = torch.tensor(counts, dtype=torch.float64) / sum(counts)
    p = p[p > 0]
    return float(-(p * p.log()).sum())


def test_planted_catalogue_code_statistics():
    m = tokenizer_metrics(PLANTED_CODES, PLANTED_SIZES)
    assert m["num_items"] == 10 and m["num_distinct_sids"] == 7
    assert m["collision_rate"] == pytest.approx(0.3)
    assert m["collided_item_share"] == pytest.approx(0.5)
    assert m["max_group_size"] == 3
    assert m["utilization"] == [1.0, 1.0, 0.5] and m["mean_utilization"] == pytest.approx(2.5 / 3)
    # per-level code counts, read off the table above
    expected_entropy = [entropy([4, 2, 2, 2]) / math.log(4), entropy([4, 1, 3, 2]) / math.log(4), entropy([4, 1, 2, 3]) / math.log(8)]
    assert m["normalized_entropy"] == pytest.approx(expected_entropy)
    assert m["mean_normalized_entropy"] == pytest.approx(sum(expected_entropy) / 3)
    assert m["sid_entropy_ratio"] == pytest.approx(entropy([3, 2, 1, 1, 1, 1, 1]) / math.log(10))
    assert m["colliding_pairs"] == 4  # C(3,2) + C(2,2)
    assert m["near_collision_pairs"] == 8  # the 4 colliding pairs + (5,0), (5,1), (5,2), (7,8)
    hamming = [int((PLANTED_CODES[i] != PLANTED_CODES[j]).sum()) for i, j in itertools.combinations(range(10), 2)]
    assert m["mean_hamming"] == pytest.approx(sum(hamming) / 45)
    assert "harmful_near_collision_share" not in m and "recon_error" not in m


def test_planted_harmful_near_collisions():
    m = tokenizer_metrics(PLANTED_CODES, PLANTED_SIZES, x=PLANTED_X, recon_error=0.25)
    # cos >= 0.5 only for identical vectors: (0,1), (0,2), (1,2), (7,8); the other 41 of 45 pairs are distant.
    assert m["distant_pairs"] == 41 and m["distant_pairs_exact"] is True
    # distant and sharing >= 2 codes: (5,0), (5,1), (5,2) and the colliding pair (3,4).
    assert m["harmful_near_collision_pairs"] == 4
    assert m["harmful_near_collision_share"] == pytest.approx(4 / 41)
    assert m["recon_error"] == 0.25
    scaled = tokenizer_metrics(PLANTED_CODES, PLANTED_SIZES, x=PLANTED_X * 7.0)  # cosine ignores the norm
    assert scaled["harmful_near_collision_pairs"] == 4


def test_sampled_denominator_above_the_exact_limit():
    m = tokenizer_metrics(PLANTED_CODES, PLANTED_SIZES, x=PLANTED_X, exact_pairs_max_items=5, num_random_pairs=20_000, seed=1)
    assert m["distant_pairs_exact"] is False
    assert m["distant_pairs"] == pytest.approx(41, rel=0.05)
    assert m["harmful_near_collision_pairs"] == 4  # the numerator stays exact
    again = tokenizer_metrics(PLANTED_CODES, PLANTED_SIZES, x=PLANTED_X, exact_pairs_max_items=5, num_random_pairs=20_000, seed=1)
    assert again["distant_pairs"] == m["distant_pairs"]


def brute_force(codes, x, threshold=0.5):
    xn = torch.nn.functional.normalize(x.float(), dim=1)
    i, j = torch.triu_indices(len(codes), len(codes), offset=1)
    h = (codes[i] != codes[j]).sum(dim=1)
    distant = (xn[i] * xn[j]).sum(dim=1) < threshold
    return {"colliding_pairs": int((h == 0).sum()), "near_collision_pairs": int((h <= 1).sum()), "distant_pairs": int(distant.sum()),
            "harmful_near_collision_pairs": int((distant & (h <= 1)).sum()), "mean_hamming": float(h.double().mean())}


@pytest.mark.parametrize("sizes", [(3, 3, 3), (1, 2, 2), (4, 1), (5,)])
def test_pair_counts_equal_brute_force(sizes):
    # (1, 2, 2) on 1200 items puts ~600 items in one leave-one-out bucket: the row-block path for large buckets.
    n = 1200 if sizes == (1, 2, 2) else 300
    g = torch.Generator().manual_seed(0)
    codes = torch.stack([torch.randint(k, (n,), generator=g) for k in sizes], dim=1)
    x = torch.randn(n, 4, generator=g)
    m = tokenizer_metrics(codes, sizes, x=x)
    expected = brute_force(codes, x)
    for key, value in expected.items():
        assert m[key] == pytest.approx(value), key


def test_bad_input_errors():
    with pytest.raises(ValueError, match=r"code 8 of row 3 is out of range for level 2 \(size 8\)"):
        tokenizer_metrics(torch.tensor([[0, 0, 0]] * 3 + [[0, 0, 8]]), PLANTED_SIZES)
    with pytest.raises(ValueError, match="3 levels but 2 codebook sizes"):
        tokenizer_metrics(PLANTED_CODES, (4, 4))
    with pytest.raises(ValueError, match=r"x must be \(N=10, d\)"):
        tokenizer_metrics(PLANTED_CODES, PLANTED_SIZES, x=PLANTED_X[:9])
    bad = PLANTED_X.clone()
    bad[6, 1] = float("nan")
    with pytest.raises(ValueError, match=r"NaN/inf in 1 row\(s\): \[6\]"):
        tokenizer_metrics(PLANTED_CODES, PLANTED_SIZES, x=bad)
    with pytest.raises(ValueError, match="non-empty"):
        tokenizer_metrics(torch.zeros(0, 3, dtype=torch.long), PLANTED_SIZES)


def test_large_catalogue_runs_with_consistent_values():
    g = torch.Generator().manual_seed(0)
    n = 200_000
    codes = torch.randint(0, 64, (n, 3), generator=g)
    m = tokenizer_metrics(codes, (64, 64, 64), x=torch.randn(n, 8, generator=g), num_random_pairs=20_000)
    # uniform codes: E[collision rate] = 1 - (1 - (1 - 1/K^3)^N) K^3 / N
    k3 = 64**3
    assert m["collision_rate"] == pytest.approx(1 - (1 - (1 - 1 / k3) ** n) * k3 / n, rel=0.02)
    assert m["mean_hamming"] == pytest.approx(3 * (1 - 1 / 64), rel=1e-3)
    assert m["distant_pairs_exact"] is False
    assert 0 < m["harmful_near_collision_pairs"] <= m["near_collision_pairs"]
