"""SASRec reference: training windows cover every training target once; ranking equals the model's own logits."""

import numpy as np
import torch

from genrec.data import CausalCollator
from genrec.models.sasrec import (
    SASRecConfig,
    build_sasrec,
    rank_items,
    sasrec_eval_rows,
    sasrec_training_rows,
)


def test_windows_make_every_position_a_target_exactly_once_with_bounded_context():
    rng = np.random.default_rng(0)
    sequences = [rng.integers(0, 50, size=n) for n in (1, 2, 5, 6, 7, 13, 40)]
    rows = sasrec_training_rows(sequences, max_history=5)
    # (target, context) pairs from the windows: position t of a window predicts window[t] from window[:t].
    pairs = sorted((tuple(r["input_ids"][:t][-5:]), r["input_ids"][t]) for r in rows for t in range(1, len(r["input_ids"])))
    expected = sorted((tuple((s[max(0, t - 5):t] + 1).tolist()), int(s[t]) + 1) for s in sequences for t in range(1, len(s)))
    targets = sorted(p[1] for p in pairs)
    assert targets == sorted(e[1] for e in expected)  # every target once
    assert all(len(r["input_ids"]) <= 6 and r["labels"] == r["input_ids"] for r in rows)
    assert all(len(ctx) >= 1 for ctx, _ in pairs)


def test_rank_items_matches_the_full_forward_pass_and_never_returns_padding():
    torch.manual_seed(0)
    model = build_sasrec(30, SASRecConfig(hidden_size=16, num_layers=1, num_heads=2, dropout=0.0)).eval()

    class Ex:  # the Examples interface sasrec_eval_rows reads
        target = np.array([3, 4, 5])
        user_index = np.array([0, 1, 2])

        def histories(self):
            return [[1, 2, 3], [7], [9, 8, 7, 6, 5]]

    rows = sasrec_eval_rows(Ex())
    batch = CausalCollator(pad_id=0)(rows)
    ranked = rank_items(model, batch["input_ids"], batch["attention_mask"], top_k=30)
    for i, row in enumerate(rows):
        logits = model(input_ids=torch.tensor([row["input_ids"]])).logits[0, -1]
        logits[0] = float("-inf")
        assert torch.equal(ranked[i], logits.topk(30).indices - 1)
    assert (ranked >= 0).all() and (ranked < 30).all()
