"""Bucketed candidate pairs and catalogue bucket loads, checked against brute force on random codes."""

import itertools

import pytest
import torch

from genrec.tokenizer.pairs import (
    CatalogueLoad,
    all_pairs,
    bucket_load,
    candidate_pairs,
    pairs_within_groups,
    row_ids,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def random_codes(seed, max_items=200, max_levels=4, max_k=6):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(0, max_items, (1,), generator=g))
    levels = int(torch.randint(1, max_levels + 1, (1,), generator=g))
    k = int(torch.randint(1, max_k + 1, (1,), generator=g))
    return torch.randint(k, (n, levels), generator=g)


def brute_force(codes):
    """Plain Python loops over all pairs: (i, j, hamming, shared prefix)."""
    rows = codes.tolist()
    found = []
    for i, j in itertools.combinations(range(len(rows)), 2):
        differ = [a != b for a, b in zip(rows[i], rows[j], strict=True)]
        prefix = next((level for level, d in enumerate(differ) if d), len(differ))
        found.append((i, j, sum(differ), prefix))
    return found


@pytest.mark.parametrize("seed", range(30))
def test_candidate_pairs_equal_brute_force(seed):
    codes = random_codes(seed)
    every_pair = brute_force(codes)
    for max_hamming in range(codes.shape[1] + 1):
        pairs = candidate_pairs(codes, max_hamming)
        got = list(zip(pairs.left.tolist(), pairs.right.tolist(), pairs.hamming.tolist(), pairs.shared_prefix.tolist(), strict=True))
        assert got == [p for p in every_pair if p[2] <= max_hamming]
        level_count = codes.shape[1]
        assert torch.allclose(pairs.severity, (level_count - pairs.hamming).float() / level_count)
        reference = all_pairs(codes, max_hamming)
        assert torch.equal(pairs.left, reference.left) and torch.equal(pairs.right, reference.right)


def test_pairs_within_groups_and_row_ids():
    left, right = pairs_within_groups(torch.tensor([3, 1, 3, 3, 1, 7]))
    assert sorted(zip(left.tolist(), right.tolist(), strict=True)) == [(0, 2), (0, 3), (1, 4), (2, 3)]
    # Rows too large to pack into one int64 fall back to a sort of the rows and give the same partition.
    big = torch.tensor([[10**6] * 5, [3] * 5, [10**6] * 5])
    ids = row_ids(big)
    assert ids[0] == ids[2] != ids[1]
    assert row_ids(torch.zeros(4, 0, dtype=torch.long)).tolist() == [0, 0, 0, 0]


def test_candidate_pairs_unpackable_codes_and_bad_input():
    g = torch.Generator().manual_seed(0)
    small = torch.randint(3, (60, 8), generator=g)
    # Shift codes far apart: same equality pattern, but 8 levels x 10^9 codes cannot be packed in int64.
    huge = small * 10**9
    a, b = candidate_pairs(small, 2), candidate_pairs(huge, 2)
    assert torch.equal(a.left, b.left) and torch.equal(a.right, b.right) and len(a) > 0
    with pytest.raises(ValueError, match="2-D"):
        candidate_pairs(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        candidate_pairs(torch.zeros(5, 2))
    with pytest.raises(ValueError, match="negative"):
        candidate_pairs(torch.tensor([[0, -1]]))
    with pytest.raises(ValueError, match="max_hamming"):
        candidate_pairs(small, -1)


@pytest.mark.parametrize("seed", range(10))
def test_bucket_load_is_the_catalogue_histogram(seed):
    codes = random_codes(seed, max_items=300)
    for prefix_len in range(codes.shape[1] + 1):
        load = bucket_load(codes, prefix_len)
        prefixes = [tuple(row[:prefix_len]) for row in codes.tolist()]
        expected = [prefixes.count(p) for p in prefixes]
        assert load.lookup(codes).tolist() == expected
        assert int(load.sizes.sum()) == len(codes)
    # A bucket the catalogue lacks (here a code beyond the catalogue's range) has load 0.
    load = bucket_load(codes, codes.shape[1])
    absent = torch.full((1, codes.shape[1]), 99)
    assert load.lookup(absent).tolist() == [0]
    with pytest.raises(ValueError, match="prefix_len"):
        bucket_load(codes, codes.shape[1] + 1)


def test_catalogue_load_of_pairs():
    catalogue = torch.tensor([[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 1], [0, 0, 2], [5, 0, 1], [1, 1, 1]])
    batch = torch.tensor([[0, 0, 0], [0, 0, 0], [0, 0, 1], [5, 0, 1]])
    pairs = candidate_pairs(batch, 1)
    got = dict(zip(zip(pairs.left.tolist(), pairs.right.tolist(), strict=True), CatalogueLoad(catalogue).pair_load(batch, pairs).tolist(), strict=True))
    # (0,1): full collision bucket (0,0,0) has 3 items; (0,2)/(1,2): prefix (0,0,*) has 5 items;
    # (2,3): codes agree at levels 2 and 3 -> items matching (*,0,1): (0,0,1) and (5,0,1) -> 2.
    assert got == {(0, 1): 3, (0, 2): 5, (1, 2): 5, (2, 3): 2}
    by_prefix = dict(zip(zip(pairs.left.tolist(), pairs.right.tolist(), strict=True), CatalogueLoad(catalogue, prefix_len=2).pair_load(batch, pairs).tolist(), strict=True))
    # prefix (0,0) holds 5 items; (5,0) holds 1; the straddling pair (2,3) takes the larger side.
    assert by_prefix == {(0, 1): 5, (0, 2): 5, (1, 2): 5, (2, 3): 5}
