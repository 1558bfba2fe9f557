"""``dedup_loss: false``: the last SID level (the dedup code) carries no training loss, for every model type."""

from __future__ import annotations

import numpy as np
import pytest

from genrec.data import IGNORE_INDEX, load_dataset
from genrec.tokenizer import SIDTable
from tests._genrec_tiny import TINY_CAUSAL, TINY_T5, make_dataset, recipe_args

pytestmark = pytest.mark.usefixtures("single_thread", "fresh_accelerator_state")

MODEL_TYPES = {
    "t5": TINY_T5,
    "t5_every_item": [*TINY_T5, "model.encoder=causal", "model.train_targets=every_item"],
    "causal": TINY_CAUSAL,
    "causal_every_item": [*TINY_CAUSAL, "model.causal.train_targets=every_item"],
}


@pytest.mark.parametrize("model_type", sorted(MODEL_TYPES))
def test_only_the_dedup_levels_labels_are_left_out_of_the_loss(tmp_path, model_type):
    from genrec.recipes import train_genrec

    data, tok = make_dataset(tmp_path)
    inputs = {}
    for dedup_loss in (True, False):
        cfg = train_genrec.load_config(train_genrec.GenRecConfig, None, [
            *recipe_args(data, tok, tmp_path / "run", *MODEL_TYPES[model_type]), f"dedup_loss={str(dedup_loss).lower()}"])
        dataset = load_dataset(str(data))
        inputs[dedup_loss] = train_genrec.build_inputs(cfg, dataset, train_genrec.load_split(cfg, dataset), SIDTable.load(tok),
                                                       with_model=False)
    first, size = inputs[True].space.level_ranges[-1]
    kept, masked = inputs[True].train_ds["labels"], inputs[False].train_ds["labels"]
    assert len(kept) == len(masked) and [len(r) for r in kept] == [len(r) for r in masked]
    kept, masked = np.concatenate([np.asarray(r) for r in kept]), np.concatenate([np.asarray(r) for r in masked])
    dedup = (kept >= first) & (kept < first + size)
    assert dedup.any() and (masked[dedup] == IGNORE_INDEX).all()
    assert (masked[~dedup] == kept[~dedup]).all()  # the other levels' labels, and the prompt's -100s, as they were
    assert inputs[False].train_ds["input_ids"] == inputs[True].train_ds["input_ids"]  # inputs keep every level
    assert inputs[False].test_ds["labels"] == inputs[True].test_ds["labels"]  # evaluation rows are untouched


@pytest.mark.slow
def test_a_run_without_dedup_loss_trains_ranks_and_cannot_be_resumed_with_it(tmp_path):
    from accelerate.state import AcceleratorState

    from genrec.recipes import train_genrec

    data, tok = make_dataset(tmp_path)
    common = recipe_args(data, tok, tmp_path / "run", *TINY_T5, "training.max_steps=4", "training.checkpoint_every_steps=2",
                         "eval.final_validation=false")
    metrics = train_genrec.main([*common, "dedup_loss=false"])
    assert metrics["steps"] == 4 and 0.0 <= metrics["test"]["ndcg@10"] <= 1.0
    assert (tmp_path / "run" / "config.json").read_text().count('"dedup_loss": false') == 1
    AcceleratorState._reset_state(reset_partial_state=True)
    with pytest.raises(ValueError, match=r"--resume with a different dedup_loss"):
        train_genrec.main(["--resume", *common, "dedup_loss=true"])
