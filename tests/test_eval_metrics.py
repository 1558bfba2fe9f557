import math

import pytest
import torch

from genrec.eval.metrics import per_user_metrics, ranking_metrics, target_ranks


def test_hand_computed_values():
    ranked = torch.tensor([[3, 1, 2, 0, 4, 5], [9, 8, 7, 6, 5, 4], [1, 2, 3, 4, 5, 6], [2, -1, -1, -1, -1, -1]])
    targets = torch.tensor([3, 4, 6, 7])
    assert target_ranks(ranked, targets).tolist() == [0, 5, 5, -1]
    m = ranking_metrics(ranked, targets, ks=(5, 6))
    # user 0 hit at rank 0 -> 1; users 1, 2 hit at rank 5 (inside @6 only); user 3 misses.
    assert m["recall@5"] == pytest.approx(1 / 4)
    assert m["recall@6"] == pytest.approx(3 / 4)
    assert m["ndcg@5"] == pytest.approx(1 / 4)
    assert m["ndcg@6"] == pytest.approx((1 + 2 / math.log2(7)) / 4)


def test_per_user_shapes_and_k_too_large():
    ranked = torch.tensor([[1, 2], [2, 1]])
    pu = per_user_metrics(ranked, torch.tensor([2, 2]), ks=(1, 2))
    assert pu["recall@1"].tolist() == [0.0, 1.0]
    assert pu["ndcg@2"].tolist() == pytest.approx([1 / math.log2(3), 1.0])
    with pytest.raises(ValueError, match="@5"):
        per_user_metrics(ranked, torch.tensor([2, 2]), ks=(5,))
