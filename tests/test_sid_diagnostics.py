"""SID diagnostics (genrec.eval.sid_diagnostics) on a planted 6-item catalogue (hand-computed answers) and
against plain-Python brute force over all pairs on random catalogues."""

import itertools
import json
import math
import random

import numpy as np
import pytest
import torch

import genrec.eval.sid_diagnostics as sid_diagnostics_module
from genrec.eval.sid_diagnostics import (
    CoConsumption,
    consecutive_prefix_sharing,
    overlap_pairs,
    pair_compatibility,
    random_pairs,
    sid_diagnostics,
    top1_sibling_share,
)
from genrec.tokenizer import add_dedup_codes

pytestmark = pytest.mark.usefixtures("single_thread")

# 6 items, L = 4 (3 semantic levels + the dedup code):
#   0, 1 collide (same semantic code 1,2,3; dedup 0 / 1); 2 shares levels 1-2 with them (siblings (0,2), (1,2));
#   3 shares only level 1 with 0-2; 4, 5 collide (7,8,9).
CODES = torch.tensor([[1, 2, 3, 0], [1, 2, 3, 1], [1, 2, 4, 0], [1, 5, 6, 0], [7, 8, 9, 0], [7, 8, 9, 1]])
# 2-d content: 0 and 1 point the same way (cos 1); 4 and 5 are 45 degrees apart (cos 1/sqrt 2); 2 is orthogonal to 0.
CONTENT = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 2.0], [1.0, 1.0]])
# user 0 consumed 0, 1, 2 (so (0,1), (0,2), (1,2) are co-consumed); user 1: 4, 4 (a repeat), then 3; user 2: 5 alone.
SEQUENCES = [np.array([0, 1, 2]), np.array([4, 4, 3]), np.array([5])]


def pair_set(found) -> set[tuple[int, int]]:
    return {tuple(p) for p in found.pairs.tolist()}


def shared_prefix(a, b) -> int:
    k = 0
    while k < len(a) and a[k] == b[k]:
        k += 1
    return k


# ---------------------------------------------------------------------------------------------- planted catalogue
def test_planted_overlap_pairs():
    collided = overlap_pairs(CODES, 3)
    assert pair_set(collided) == {(0, 1), (4, 5)}
    assert (collided.total_pairs, collided.left_out, collided.capped_buckets) == (2, 0, 0)
    assert pair_set(overlap_pairs(CODES, 2)) == {(0, 1), (0, 2), (1, 2), (4, 5)}
    siblings = overlap_pairs(CODES, 2, exact=True)  # levels 1-2 shared, level 3 differs
    assert pair_set(siblings) == {(0, 2), (1, 2)} and siblings.total_pairs == 2 and siblings.left_out == 0
    assert pair_set(overlap_pairs(CODES, 1, exact=True)) == {(0, 3), (1, 3), (2, 3)}
    assert len(overlap_pairs(CODES, 4)) == 0  # full SIDs are unique
    assert overlap_pairs(CODES, 3).pairs.dtype == torch.long and overlap_pairs(CODES, 3).pairs.shape == (2, 2)


def test_large_buckets_are_capped_evenly_and_counted():
    # items 0, 2, 4, 5, 6 have level-1 code 0 (a bucket of 5), items 1, 3 code 1 (a bucket of 2); cap 2.
    codes = torch.tensor([[0, i] for i in range(5)] + [[1, 0], [1, 1]])[[0, 5, 1, 6, 2, 3, 4]]
    found = overlap_pairs(codes, 1, max_bucket_size=2)
    # rule: of m = 5 members (item order 0, 2, 4, 5, 6 -> ranks 0..4) keep ranks r with floor((r+1)2/5) > floor(r 2/5): r = 2, 4
    assert pair_set(found) == {(4, 6), (1, 3)}
    assert found.total_pairs == 10 + 1 and found.left_out == 9 and found.capped_buckets == 1
    assert pair_set(overlap_pairs(codes, 1, max_bucket_size=5)) == {*itertools.combinations([0, 2, 4, 5, 6], 2), (1, 3)}


def test_planted_pair_compatibility():
    co = CoConsumption.from_sequences(SEQUENCES, 6)
    assert co.degree.tolist() == [1, 1, 1, 1, 1, 1]  # user 1's repeat of item 4 counts once
    stats = pair_compatibility(overlap_pairs(CODES, 3).pairs, CONTENT, co, seed=3)
    assert stats["num_pairs"] == 2 and stats["num_random_pairs"] == 2
    assert stats["cosine_mean"] == pytest.approx((1 + 1 / math.sqrt(2)) / 2)
    assert stats["cosine_p50"] == pytest.approx((1 + 1 / math.sqrt(2)) / 2)
    assert stats["cosine_p10"] == pytest.approx(1 / math.sqrt(2) + 0.1 * (1 - 1 / math.sqrt(2)))
    assert stats["co_consumed_share"] == 0.5  # (0,1) by user 0; (4,5) by nobody
    # the baseline: the seeded random pairs, scored here by hand
    baseline = random_pairs(6, 2, seed=3).tolist()
    unit = torch.nn.functional.normalize(CONTENT, dim=1)
    expected = [float(unit[i] @ unit[j]) for i, j in baseline]
    assert stats["random_cosine_mean"] == pytest.approx(sum(expected) / 2)
    users = [set(map(int, s)) for s in SEQUENCES]
    assert stats["random_co_consumed_share"] == pytest.approx(sum(any({i, j} <= u for u in users) for i, j in baseline) / 2)
    assert stats["seen_pair_share"] == 1.0 and stats["co_consumed_share_seen"] == 0.5
    # without user 2, item 5 is never consumed: (4,5) cannot be co-consumed and leaves the *_seen share
    partial = pair_compatibility(overlap_pairs(CODES, 3).pairs, None, CoConsumption.from_sequences(SEQUENCES[:2], 6))
    assert partial["co_consumed_share"] == 0.5 and partial["seen_pair_share"] == 0.5 and partial["co_consumed_share_seen"] == 1.0
    assert "cosine_mean" not in partial
    empty = pair_compatibility(torch.zeros(0, 2, dtype=torch.long), CONTENT, co)
    assert empty["num_pairs"] == 0 and empty["cosine_mean"] is None and empty["co_consumed_share"] is None


def test_random_pairs_are_distinct_seeded_and_uniform():
    pairs = random_pairs(4, 120_000, seed=1)
    assert torch.equal(pairs, random_pairs(4, 120_000, seed=1)) and not torch.equal(pairs, random_pairs(4, 120_000, seed=2))
    assert bool((pairs[:, 0] != pairs[:, 1]).all())
    counts = torch.bincount(pairs[:, 0] * 4 + pairs[:, 1], minlength=16).view(4, 4)
    off_diagonal = counts[~torch.eye(4, dtype=torch.bool)].double()
    assert float((off_diagonal / off_diagonal.sum() - 1 / 12).abs().max()) < 0.005  # each ordered pair ~ 1/12


def test_planted_consecutive_prefix_sharing():
    out = consecutive_prefix_sharing(CODES, SEQUENCES)
    # pairs: (0,1) shares 3 codes, (1,2) shares 2, (4,4) a repeat (left out), (4,3) shares 0
    assert out["consecutive_pairs"] == 3 and out["consecutive_repeats_excluded"] == 1
    assert out["consecutive_share_prefix1"] == pytest.approx(2 / 3)
    assert out["consecutive_share_prefix2"] == pytest.approx(2 / 3)
    assert out["consecutive_share_prefix3"] == pytest.approx(1 / 3)
    assert "consecutive_share_prefix4" not in out  # the dedup level is not a semantic level
    # level-1 buckets {0,1,2,3}, {4,5}; level 1-2 {0,1,2}, {3}, {4,5}; level 1-3 {0,1}, {2}, {3}, {4,5}: ordered pairs / 30
    assert out["chance_uniform_prefix1"] == pytest.approx((12 + 2) / 30)
    assert out["chance_uniform_prefix2"] == pytest.approx((6 + 2) / 30)
    assert out["chance_uniform_prefix3"] == pytest.approx((2 + 2) / 30)
    # item frequencies among the pairs' items: 0:1, 1:2, 2:1, 3:1, 4:1 (of 6); distinct-item draws
    p = {0: 1 / 6, 1: 2 / 6, 2: 1 / 6, 3: 1 / 6, 4: 1 / 6}
    norm = 1 - sum(v * v for v in p.values())
    same1 = sum(p[i] * p[j] for i in (0, 1, 2, 3) for j in (0, 1, 2, 3) if i != j)  # 4 is alone in its level-1 bucket among p
    assert out["chance_popularity_prefix1"] == pytest.approx(same1 / norm)
    assert out["chance_popularity_prefix3"] == pytest.approx(2 * p[0] * p[1] / norm)


def test_planted_top1_siblings():
    ranked = torch.tensor([[1, 0], [0, -1], [2, 1], [3, 0], [-1, -1], [5, 4]])
    targets = torch.tensor([0, 0, 0, 0, 0, 4])
    out = top1_sibling_share(ranked, targets, CODES)
    # user 0: top-1 = 1, 0's collided sibling; 1: hit; 2: top-1 = 2 shares levels 1-2 only; 3: shares level 1 only;
    # 4: empty list; 5: top-1 = 5, 4's collided sibling
    assert out == {"top1_users": 6, "top1_hit_share": pytest.approx(1 / 6), "top1_collided_sibling_share": pytest.approx(2 / 6),
                   "top1_prefix2_only_share": pytest.approx(1 / 6), "top1_empty_share": pytest.approx(1 / 6)}
    assert top1_sibling_share(ranked, targets, CODES, prefix_len=1)["top1_prefix1_only_share"] == pytest.approx(1 / 6)


def test_entry_point_gives_what_its_inputs_allow():
    codes_only = sid_diagnostics(CODES)
    assert codes_only["collided_pairs"] == 2 and codes_only["sibling_pairs"] == 2 and codes_only["semantic_levels"] == 3
    assert not any(key.endswith("cosine_mean") or key.startswith(("consecutive", "top1")) for key in codes_only)
    full = sid_diagnostics(CODES, CONTENT, SEQUENCES, ranked_items=torch.tensor([[1], [0], [2], [3], [-1], [5]]),
                           targets=torch.tensor([0, 0, 0, 0, 0, 4]), seed=3)
    assert full["collided_cosine_mean"] == pytest.approx((1 + 1 / math.sqrt(2)) / 2)
    assert full["collided_co_consumed_share"] == 0.5
    assert full["sibling_cosine_mean"] == pytest.approx((0.0 + 0.0) / 2)  # 2 is orthogonal to 0 and 1
    assert full["sibling_co_consumed_share"] == 1.0
    assert full["consecutive_share_prefix3"] == pytest.approx(1 / 3) and full["top1_collided_sibling_share"] == pytest.approx(2 / 6)
    assert json.loads(json.dumps(full)) == full  # flat and JSON-able
    assert all(v is None or isinstance(v, int | float) for v in full.values())
    no_dedup = sid_diagnostics(CODES[:, :3], semantic_levels=3)  # codes without the dedup level
    assert no_dedup["collided_pairs"] == 2 and no_dedup["num_levels"] == 3


def test_errors_name_the_input():
    with pytest.raises(ValueError, match="codes"):
        overlap_pairs(torch.tensor([1, 2, 3]), 1)
    with pytest.raises(ValueError, match="prefix_len"):
        overlap_pairs(CODES, 5)
    with pytest.raises(ValueError, match="train_sequences.*99"):
        consecutive_prefix_sharing(CODES, [[0, 99]])
    with pytest.raises(ValueError, match="content"):
        pair_compatibility(torch.tensor([[0, 1]]), torch.zeros(5, 2), num_items=6)
    with pytest.raises(ValueError, match="content"):
        pair_compatibility(torch.tensor([[0, 1]]), torch.zeros(6))
    with pytest.raises(ValueError, match="content: NaN"):
        pair_compatibility(torch.tensor([[0, 1]]), torch.full((6, 2), float("nan")))
    with pytest.raises(ValueError, match="ranked_items"):
        top1_sibling_share(torch.tensor([[7]]), torch.tensor([0]), CODES)
    with pytest.raises(ValueError, match="both ranked_items and targets"):
        sid_diagnostics(CODES, ranked_items=torch.tensor([[0]]))


# ---------------------------------------------------------------------------------------------- brute force
def random_case(seed: int, n: int = 70, users: int = 25):
    rng = random.Random(seed)
    semantic = torch.tensor([[rng.randrange(3), rng.randrange(3), rng.randrange(2)] for _ in range(n)])
    codes = add_dedup_codes(semantic)
    sequences = [np.array([rng.randrange(n) for _ in range(rng.randrange(0, 12))]) for _ in range(users)]
    content = torch.randn(n, 5, generator=torch.Generator().manual_seed(seed))
    return codes, sequences, content


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_overlap_pairs_match_brute_force(seed):
    codes, _, _ = random_case(seed)
    rows = codes.tolist()
    n = len(rows)
    for prefix_len in (1, 2, 3):
        for exact in (False, True):
            want = {(i, j) for i, j in itertools.combinations(range(n), 2)
                    if (shared_prefix(rows[i], rows[j]) == prefix_len if exact else shared_prefix(rows[i], rows[j]) >= prefix_len)}
            found = overlap_pairs(codes, prefix_len, exact=exact, max_bucket_size=n)
            assert pair_set(found) == want and len(found) == len(want) and found.left_out == 0
            capped = overlap_pairs(codes, prefix_len, exact=exact, max_bucket_size=4)
            assert pair_set(capped) <= want and capped.total_pairs == len(want)
            assert capped.left_out == len(want) - len(capped)
            assert capped.left_out > 0 or prefix_len == 3  # the random buckets exceed 4 members below level 3


@pytest.mark.parametrize("seed", [0, 1])
def test_compatibility_and_consecutive_match_brute_force(seed, monkeypatch):
    codes, sequences, content = random_case(seed)
    rows, n = codes.tolist(), codes.shape[0]
    users = [set(map(int, s)) for s in sequences]
    co = CoConsumption.from_sequences(sequences, n)
    all_pairs = torch.tensor(list(itertools.combinations(range(n), 2)))
    assert co.co_consumed(all_pairs).tolist() == [any({i, j} <= u for u in users) for i, j in all_pairs.tolist()]
    assert co.co_consumed(all_pairs.flip(1)).tolist() == co.co_consumed(all_pairs).tolist()  # order-free
    with monkeypatch.context() as patch:  # look-ups split into many small blocks give the same answer
        patch.setattr(sid_diagnostics_module, "PAIR_CHUNK", 3)
        assert co.co_consumed(all_pairs).tolist() == [any({i, j} <= u for u in users) for i, j in all_pairs.tolist()]

    found = overlap_pairs(codes, 2).pairs.tolist()
    stats = pair_compatibility(torch.tensor(found), content, co, seed=seed)
    unit = [[c / math.sqrt(sum(c * c for c in row)) for c in row] for row in content.tolist()]
    cosines = sorted(sum(a * b for a, b in zip(unit[i], unit[j], strict=True)) for i, j in found)
    assert stats["cosine_mean"] == pytest.approx(sum(cosines) / len(cosines))
    assert stats["cosine_p50"] == pytest.approx(float(np.median(cosines)))
    assert stats["co_consumed_share"] == pytest.approx(sum(any({i, j} <= u for u in users) for i, j in found) / len(found))
    consumed = set().union(*users)
    seen = [(i, j) for i, j in found if i in consumed and j in consumed]
    assert 0 < len(seen) < len(found)  # the case has pairs with a never-consumed item
    assert stats["seen_pair_share"] == pytest.approx(len(seen) / len(found))
    assert stats["co_consumed_share_seen"] == pytest.approx(sum(any({i, j} <= u for u in users) for i, j in seen) / len(seen))

    out = consecutive_prefix_sharing(codes, sequences)
    pairs = [(int(s[t]), int(s[t + 1])) for s in sequences for t in range(len(s) - 1)]
    kept = [(a, b) for a, b in pairs if a != b]
    assert out["consecutive_pairs"] == len(kept) and out["consecutive_repeats_excluded"] == len(pairs) - len(kept)
    frequency = [0] * n
    for a, b in kept:
        frequency[a] += 1
        frequency[b] += 1
    total = sum(frequency)
    for k in (1, 2, 3):
        assert out[f"consecutive_share_prefix{k}"] == pytest.approx(sum(shared_prefix(rows[a], rows[b]) >= k for a, b in kept) / len(kept))
        ordered = [(i, j) for i in range(n) for j in range(n) if i != j]
        assert out[f"chance_uniform_prefix{k}"] == pytest.approx(sum(shared_prefix(rows[i], rows[j]) >= k for i, j in ordered) / len(ordered))
        weight = sum(frequency[i] * frequency[j] for i, j in ordered)
        assert out[f"chance_popularity_prefix{k}"] == pytest.approx(
            sum(frequency[i] * frequency[j] for i, j in ordered if shared_prefix(rows[i], rows[j]) >= k) / weight)
    assert total == 2 * len(kept)


def test_top1_matches_brute_force():
    codes, _, _ = random_case(5)
    rows, n = codes.tolist(), codes.shape[0]
    rng = random.Random(5)
    ranked = torch.tensor([[rng.randrange(-1, n) for _ in range(3)] for _ in range(200)])
    targets = torch.tensor([rng.randrange(n) for _ in range(200)])
    out = top1_sibling_share(ranked, targets, codes)
    top = [(int(r[0]), int(t)) for r, t in zip(ranked, targets, strict=True)]
    assert out["top1_hit_share"] == pytest.approx(sum(a == t for a, t in top) / 200)
    assert out["top1_collided_sibling_share"] == pytest.approx(
        sum(a >= 0 and a != t and rows[a][:3] == rows[t][:3] for a, t in top) / 200)
    assert out["top1_prefix2_only_share"] == pytest.approx(
        sum(a >= 0 and a != t and shared_prefix(rows[a][:3], rows[t][:3]) == 2 for a, t in top) / 200)
    assert out["top1_collided_sibling_share"] > 0 and out["top1_prefix2_only_share"] > 0  # the case exercises both


def test_large_catalogue_stays_bucketed():
    # 100k items: any all-pairs step would need ~10^10 entries; bucketed work is small.
    generator = torch.Generator().manual_seed(0)
    codes = add_dedup_codes(torch.randint(256, (100_000, 3), generator=generator))
    sequences = [torch.randint(100_000, (8,), generator=generator).numpy() for _ in range(5_000)]
    out = sid_diagnostics(codes, torch.randn(100_000, 8, generator=generator), sequences)
    assert out["sibling_pairs_left_out"] == 0 and out["sibling_pairs"] == out["sibling_pairs_total"] > 0
    assert out["consecutive_pairs"] > 0
