"""CF item embeddings: planted co-occurrence recovered, deterministic, cached, trained on the training split only."""

import numpy as np
import pandas as pd
import pytest
import torch

from genrec.tokenizer.collaborative import train_cf_embeddings

pytestmark = pytest.mark.usefixtures("single_thread")

GROUPS, PER_GROUP = 6, 8
NUM_ITEMS = GROUPS * PER_GROUP + 4  # the last 4 items are never consumed


def planted_sequences(users=300, length=5, seed=0):
    """Each user consumes ``length`` distinct items of one group: items of a group co-occur, others never."""
    rng = np.random.default_rng(seed)
    return [(rng.integers(GROUPS) * PER_GROUP + rng.choice(PER_GROUP, length, replace=False)).tolist() for _ in range(users)]


def within_vs_across(embeddings):
    unit = torch.nn.functional.normalize(embeddings[: GROUPS * PER_GROUP], dim=1)
    cos = unit @ unit.T
    group = torch.arange(GROUPS * PER_GROUP) // PER_GROUP
    same = group[:, None] == group[None, :]
    off_diagonal = ~torch.eye(len(group), dtype=torch.bool)
    return cos[same & off_diagonal].mean().item(), cos[~same].mean().item()


@pytest.mark.parametrize("method,epochs", [("mf", 10), ("bpr", 30)])
def test_planted_cooccurrence_is_recovered(method, epochs):
    cf = train_cf_embeddings(planted_sequences(), NUM_ITEMS, dim=16, method=method, epochs=epochs, seed=0, use_cache=False,
                             batch_size=512)
    within, across = within_vs_across(cf.embeddings)
    assert within > across + 0.3, (within, across)
    # Never-consumed items: zero rows, flagged, counted.
    assert cf.covered.tolist() == [True] * (GROUPS * PER_GROUP) + [False] * 4 and cf.num_uncovered == 4
    assert torch.count_nonzero(cf.embeddings[-4:]) == 0
    assert cf.embeddings.shape == (NUM_ITEMS, 16) and cf.embeddings.dtype == torch.float32


def test_deterministic_by_seed_and_cached(tmp_path):
    seqs = planted_sequences(users=100)
    kwargs = {"dim": 8, "epochs": 3, "batch_size": 256}
    first = train_cf_embeddings(seqs, NUM_ITEMS, seed=1, cache_dir=tmp_path, **kwargs)
    assert not first.from_cache and first.cache_path.parent == tmp_path / "cf" and first.cache_path.exists()
    again = train_cf_embeddings(seqs, NUM_ITEMS, seed=1, cache_dir=tmp_path, **kwargs)
    assert again.from_cache and again.cache_path == first.cache_path
    assert torch.equal(again.embeddings, first.embeddings) and torch.equal(again.covered, first.covered)
    fresh = train_cf_embeddings(seqs, NUM_ITEMS, seed=1, use_cache=False, **kwargs)
    assert torch.equal(fresh.embeddings, first.embeddings)  # same seed, same vectors, without the cache
    other_seed = train_cf_embeddings(seqs, NUM_ITEMS, seed=2, cache_dir=tmp_path, **kwargs)
    assert not other_seed.from_cache and not torch.equal(other_seed.embeddings, first.embeddings)
    other_data = train_cf_embeddings(seqs[:-1], NUM_ITEMS, seed=1, cache_dir=tmp_path, **kwargs)
    assert not other_data.from_cache  # the key covers the sequences
    assert sorted(p.name for p in (tmp_path / "cf").iterdir() if p.name.startswith(".")) == []  # no temp files left


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GENREC_CACHE_DIR", str(tmp_path))
    cf = train_cf_embeddings(planted_sequences(users=50), NUM_ITEMS, dim=4, epochs=1)
    assert cf.cache_path.parent == tmp_path / "cf"


def test_validation_and_test_targets_are_not_used():
    """Through the leave-one-out split: items that only ever appear as a validation or test target get no CF vector."""
    from genrec.data import leave_one_out_split

    rng = np.random.default_rng(0)
    shared = [str(i) for i in range(GROUPS * PER_GROUP)]
    private = [f"held{i}" for i in range(40)]  # consumed once each, as a user's last two interactions
    rows = []
    for user in range(20):
        history = [shared[i] for i in rng.integers(GROUPS) * PER_GROUP + rng.choice(PER_GROUP, 4, replace=False)]
        sequence = history + [private[2 * user], private[2 * user + 1]]  # validation target, test target
        rows += [(f"u{user}", item, t) for t, item in enumerate(sequence)]
    items = shared + private
    split = leave_one_out_split(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), items)
    held_out = sorted({int(t) for t in split.valid.target} | {int(t) for t in split.test.target})
    assert held_out == list(range(len(shared), len(items)))
    for method in ("mf", "bpr"):
        cf = train_cf_embeddings(split.train_item_sequences(), len(items), dim=8, method=method, epochs=2, use_cache=False)
        assert not cf.covered[held_out].any() and cf.covered[: len(shared)].sum() > 0
        assert torch.count_nonzero(cf.embeddings[held_out]) == 0


def test_bad_input():
    with pytest.raises(ValueError, match=r"train sequence 1 holds item indices outside 0..51: \[52\]"):
        train_cf_embeddings([[0, 1], [2, 52]], NUM_ITEMS, use_cache=False)
    with pytest.raises(ValueError, match="train sequence 0 must be a 1-D list of integer item indices"):
        train_cf_embeddings([[0.5, 1.0]], NUM_ITEMS, use_cache=False)
    with pytest.raises(ValueError, match="unknown CF method 'sasrec'"):
        train_cf_embeddings([[0, 1]], NUM_ITEMS, method="sasrec")
    with pytest.raises(ValueError, match="no two distinct items co-occur"):
        train_cf_embeddings([[0], [1, 1]], NUM_ITEMS, use_cache=False)
    with pytest.raises(ValueError, match="hold no interaction"):
        train_cf_embeddings([[], []], NUM_ITEMS, method="bpr", use_cache=False)
