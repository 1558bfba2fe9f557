"""Dedup codes, the SID table and the tokenizer-quality metrics on planted catalogues."""

import math

import pytest
import torch

from genrec.tokenizer import SIDTable, add_dedup_codes, tokenizer_metrics


def test_dedup_codes_number_collisions_in_row_order():
    codes = torch.tensor([[0, 0], [1, 2], [0, 0], [3, 3], [1, 2], [0, 0]])
    assert add_dedup_codes(codes)[:, -1].tolist() == [0, 0, 1, 0, 1, 2]
    assert add_dedup_codes(codes)[:, :2].tolist() == codes.tolist()


def test_sid_table_lookups_and_errors(tmp_path):
    table = SIDTable.from_codes(["a", "b", "c"], torch.tensor([[1, 1], [1, 1], [0, 2]]), (2, 3))
    assert table.codebook_sizes == (2, 3, 2)
    assert table.sid("b") == (1, 1, 1) and table.item((0, 2, 0)) == "c"
    table.save(tmp_path)
    again = SIDTable.load(tmp_path)
    assert again.item_ids == table.item_ids and torch.equal(again.sids, table.sids)
    with pytest.raises(ValueError, match=r"duplicate SID.*\['a', 'b'\]"):
        SIDTable(["a", "b"], torch.tensor([[1, 1], [1, 1]]))
    with pytest.raises(ValueError, match="out of range at level 1"):
        SIDTable(["a"], torch.tensor([[0, 5]]), (2, 3))
    with pytest.raises(KeyError, match="unknown item"):
        table.sid("zz")
    (tmp_path / "sid_items.json").unlink()
    with pytest.raises(FileNotFoundError, match="sid_items.json"):
        SIDTable.load(tmp_path)


def test_metrics_on_planted_catalogue():
    # 8 items, L=2, K=4: groups {0,1,2} share (0,0), {3,4} share (1,1), 5, 6, 7 distinct.
    codes = torch.tensor([[0, 0], [0, 0], [0, 0], [1, 1], [1, 1], [2, 0], [3, 2], [0, 3]])
    m = tokenizer_metrics(codes, (4, 4), num_random_pairs=20000)
    assert m["collision_rate"] == pytest.approx(1 - 5 / 8)
    assert m["collided_item_share"] == pytest.approx(5 / 8)
    assert m["max_group_size"] == 3
    assert m["utilization"] == [1.0, 1.0]  # level 0 uses {0,1,2,3}, level 1 uses {0,1,2,3}
    p0 = torch.tensor([4, 2, 1, 1]) / 8
    assert m["normalized_entropy"][0] == pytest.approx(float(-(p0 * p0.log()).sum() / math.log(4)))
    groups = torch.tensor([3, 2, 1, 1, 1]) / 8
    assert m["sid_entropy_ratio"] == pytest.approx(float(-(groups * groups.log()).sum() / math.log(8)))
    # exact mean Hamming over ordered pairs of distinct items, vs the seeded sample
    ham = (codes[:, None] != codes[None]).sum(-1).float()
    assert m["mean_hamming"] == pytest.approx(float(ham.sum() / (8 * 7)), abs=0.05)


def test_harmful_near_collisions_counted_exactly():
    # Items 0 and 1 share 1 of 2 codes (>= L-1) and are semantically distant: harmful.
    # Items 2 and 3 share all codes and are near-identical: not harmful. Item 4 shares nothing.
    codes = torch.tensor([[0, 0], [0, 1], [2, 2], [2, 2], [3, 3]])
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.7, -0.7]])
    m = tokenizer_metrics(codes, (4, 4), x=x)
    # cosine < 0.5 pairs: all pairs except (2,3) and (0,4) [cos 0.707]: 10 - 2 = 8
    assert m["distant_pairs"] == 8
    assert m["harmful_near_collision_pairs"] == 1
    assert m["harmful_near_collision_share"] == pytest.approx(1 / 8)


def test_metrics_scale_to_large_catalogues_without_pairs():
    codes = torch.randint(0, 256, (200_000, 3), generator=torch.Generator().manual_seed(0))
    m = tokenizer_metrics(codes, (256, 256, 256), num_random_pairs=10_000)
    assert 0.0 <= m["collision_rate"] < 0.02 and m["mean_utilization"] == 1.0
