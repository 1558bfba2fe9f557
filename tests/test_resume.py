"""Checkpoint and resume: a resumed run reaches exactly the weights and metrics of an uninterrupted one.

Equality is exact (``torch.equal`` on every tensor, ``==`` on metrics), not allclose: both runs do
the same float operations in the same order on the same machine with one thread (the subprocesses
get OMP_NUM_THREADS=1), and the checkpoint restores every bit of state (weights, AdamW moments,
scheduler, Accelerate's accumulation counter, RNG states, data position). Any tolerance would hide
a missing piece of state: with dropout on, a wrong RNG state changes the weights in the first step.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genrec.models import build_t5
from genrec.training import TrainingConfig, train
from genrec.training.checkpoint import latest_checkpoint, list_checkpoints
from genrec.vocab import SIDVocab
from tests._genrec_tiny import RECIPE, TINY_T5, make_dataset, python, recipe_args, subprocess_env
from tests.helpers import TRAINING_T5, collate_toy_rows, toy_rows

pytestmark = pytest.mark.usefixtures("single_thread", "fresh_accelerator_state")


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def _train(out: Path, cfg: TrainingConfig, resume=False):
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    vocab = SIDVocab((4, 2, 1))
    torch.manual_seed(0)
    model = build_t5(vocab, dataclasses.replace(TRAINING_T5, dropout_rate=0.1))  # dropout: the RNG state matters
    calls = []

    def validate(m, acc):
        calls.append(1)
        batch = collate_toy_rows([ds[i] for i in range(32)])
        with torch.no_grad():
            return {"ndcg@10": -m(**batch).loss.item()}

    ds = toy_rows(vocab, n=100)
    return train(model, ds, collate_toy_rows, cfg, out, validate_fn=validate, resume=resume), len(calls)


@pytest.mark.parametrize("precision,accum,every,eval_every", [("no", 1, 3, None), ("bf16", 2, 3, None),
                                                              pytest.param("no", 1, 3, 2, marks=pytest.mark.slow)])
def test_resume_from_every_checkpoint_equals_uninterrupted(tmp_path, precision, accum, every, eval_every):
    """7 batches per epoch, 3 epochs: checkpoints fall mid-epoch and at epoch ends; resume from each.
    With ``eval_every`` validation also runs mid-epoch (constant LR): the learning curve must match too."""
    cfg = TrainingConfig(epochs=3, batch_size=16, learning_rate=1e-2, warmup_steps=2, seed=3, mixed_precision=precision,
                         grad_accum_steps=accum, checkpoint_every_steps=every, keep_checkpoints=100, eval_every_steps=eval_every,
                         lr_scheduler="constant" if eval_every else "cosine")
    full, _ = _train(tmp_path / "full", cfg)
    checkpoints = list_checkpoints(tmp_path / "full" / "checkpoints")
    states = [json.loads((c / "trainer_state.json").read_text()) for c in checkpoints]
    assert any(s["batches_done"] for s in states) and any(not s["batches_done"] for s in states)  # both kinds
    final = _weights(checkpoints[-1])
    for checkpoint in checkpoints[:-1]:
        out = tmp_path / f"from_{checkpoint.name}"
        shutil.copytree(checkpoint, out / "checkpoints" / checkpoint.name)
        resumed, _ = _train(out, cfg, resume=True)
        assert resumed.resumed_from == out / "checkpoints" / checkpoint.name
        _assert_same_weights(final, _weights(latest_checkpoint(out / "checkpoints")))
        assert resumed.steps == full.steps
        assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
        assert resumed.best_metric == full.best_metric and resumed.best_epoch == full.best_epoch
        timeless = [[{k: v for k, v in row.items() if k not in ("train_seconds", "cpu_seconds")} for row in r.learning_curve] for r in (resumed, full)]
        assert timeless[0] == timeless[1] and resumed.best_step == full.best_step


def test_resume_of_a_finished_run_does_not_train_again(tmp_path):
    cfg = TrainingConfig(epochs=2, batch_size=32, warmup_steps=1, max_steps=3, checkpoint_every_steps=2)
    first, calls = _train(tmp_path, cfg)
    assert first.steps == 3 and calls == 1
    again, calls = _train(tmp_path, cfg, resume=True)
    assert calls == 0 and again.steps == 3 and again.best_metric == first.best_metric
    assert again.history == first.history


def test_checkpoints_are_published_atomically_and_a_fresh_start_clears_them(tmp_path):
    cfg = TrainingConfig(epochs=1, batch_size=32, warmup_steps=1, checkpoint_every_steps=1, keep_checkpoints=2)
    _train(tmp_path, cfg)
    root = tmp_path / "checkpoints"
    kept = list_checkpoints(root)
    assert [c.name for c in kept] == ["step-00000003", "step-00000004"]  # 4 batches: the newest 2 kept
    for c in kept:
        assert {"model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl", "trainer_state.json"} <= {
            p.name for p in c.iterdir()}
    assert not list(root.glob(".*.tmp"))
    # A save killed half-way leaves a temporary folder (and perhaps a step folder without trainer state): never picked.
    (root / ".step-00000009.tmp").mkdir()
    (root / "step-00000010").mkdir()
    assert latest_checkpoint(root) == kept[-1]
    # A process count other than the checkpoint's is refused (data position and RNG are per process).
    state = json.loads((kept[-1] / "trainer_state.json").read_text())
    (kept[-1] / "trainer_state.json").write_text(json.dumps({**state, "num_processes": 2}))
    with pytest.raises(ValueError, match="same number"):
        _train(tmp_path, cfg, resume=True)
    # Without resume, the earlier run's checkpoints are removed rather than left for a later --resume.
    _train(tmp_path, dataclasses.replace(cfg, checkpoint_every_steps=None, checkpoint_at_epoch_end=False))
    assert not root.exists()


def _run_recipe(out: Path, data: Path, tok: Path, *extra: str, log: Path) -> subprocess.Popen:
    args = recipe_args(data, tok, out, *TINY_T5, "model.dropout_rate=0.1", "training.epochs=20", "training.checkpoint_every_steps=15",
                       "training.checkpoint_at_epoch_end=false", "eval.valid_max_users=16", *extra)
    with open(log, "w") as f:
        return subprocess.Popen([python(), str(RECIPE), *args], stdout=f, stderr=subprocess.STDOUT, env=subprocess_env())


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_matches_uninterrupted_run(tmp_path):
    data, tok = make_dataset(tmp_path)
    reference = _run_recipe(tmp_path / "ref", data, tok, log=tmp_path / "ref.log")
    victim = _run_recipe(tmp_path / "run", data, tok, log=tmp_path / "run.log")
    # Kill the second run with SIGKILL as soon as its first checkpoint is published: step 15, mid-epoch 1 (10 steps an epoch).
    deadline = time.monotonic() + 120
    while latest_checkpoint(tmp_path / "run" / "checkpoints") is None:
        assert victim.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    killed_at = json.loads((latest_checkpoint(tmp_path / "run" / "checkpoints") / "trainer_state.json").read_text())
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert killed_at["steps"] < 200, "the run finished before it could be killed"  # 20 epochs x 10 steps
    assert killed_at["batches_done"] > 0  # mid-epoch: resuming skips the consumed batches

    resumed = _run_recipe(tmp_path / "run", data, tok, "--resume", log=tmp_path / "resume.log")
    assert resumed.wait(timeout=300) == 0, (tmp_path / "resume.log").read_text()[-3000:]
    assert reference.wait(timeout=300) == 0, (tmp_path / "ref.log").read_text()[-3000:]

    ref, run = json.loads((tmp_path / "ref" / "metrics.json").read_text()), json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert run["resumed_from"] and ref["resumed_from"] is None
    assert run["steps"] == ref["steps"] == 200 and run["best_epoch"] == ref["best_epoch"]
    assert run["validation"] == ref["validation"] and run["test"] == ref["test"]
    _assert_same_weights(_weights(tmp_path / "ref" / "best"), _weights(tmp_path / "run" / "best"))
    _assert_same_weights(_weights(latest_checkpoint(tmp_path / "ref" / "checkpoints")),
                         _weights(latest_checkpoint(tmp_path / "run" / "checkpoints")))
    history = [json.loads((tmp_path / d / "train_history.json").read_text())["epochs"] for d in ("ref", "run")]
    assert [e["train_loss"] for e in history[0]] == [e["train_loss"] for e in history[1]]
    assert [e["validation"] for e in history[0]] == [e["validation"] for e in history[1]]


def test_a_second_run_on_the_same_folder_is_refused_while_the_first_holds_it(tmp_path):
    from genrec.training.checkpoint import RunLock

    with RunLock(tmp_path):
        with pytest.raises(RuntimeError, match="in use by another training run"):
            _train(tmp_path, TrainingConfig(epochs=1, batch_size=32, warmup_steps=1))
    first, _ = _train(tmp_path, TrainingConfig(epochs=1, batch_size=32, warmup_steps=1))  # released: it runs
    assert first.steps == 4


def test_a_fresh_start_deletes_only_the_checkpoints_genrec_wrote(tmp_path):
    cfg = TrainingConfig(epochs=1, batch_size=32, warmup_steps=1, checkpoint_every_steps=2)
    _train(tmp_path, cfg)
    root = tmp_path / "checkpoints"
    (root / "my_notes.txt").write_text("keep me")
    (root / "step-old-experiment").mkdir()
    (tmp_path / "results.csv").write_text("keep me too")
    _train(tmp_path, cfg)  # fresh start (no resume)
    assert (root / "my_notes.txt").read_text() == "keep me" and (root / "step-old-experiment").is_dir()
    assert (tmp_path / "results.csv").read_text() == "keep me too"
    assert [c.name for c in list_checkpoints(root)] == ["step-00000004"]


def test_resume_refuses_settings_that_change_the_run(tmp_path):
    cfg = TrainingConfig(epochs=2, batch_size=32, warmup_steps=1, learning_rate=1e-3, checkpoint_every_steps=2, keep_checkpoints=10)
    _train(tmp_path, dataclasses.replace(cfg, max_steps=3))
    shutil.rmtree(latest_checkpoint(tmp_path / "checkpoints"))  # the final (stopped) one: resume from step 2 as after a kill
    with pytest.raises(ValueError, match=r"learning_rate: 0.001 -> 0.01"):
        _train(tmp_path, dataclasses.replace(cfg, learning_rate=1e-2), resume=True)
    with pytest.raises(ValueError, match=r"batch_size: 32 -> 16"):
        _train(tmp_path, dataclasses.replace(cfg, batch_size=16), resume=True)
    # A longer budget is not a different run.
    longer, _ = _train(tmp_path, cfg, resume=True)
    assert longer.steps == 8 and longer.resumed_from == tmp_path / "checkpoints" / "step-00000002"


def test_a_constant_run_branched_into_a_decay_equals_the_decay_run_from_scratch(tmp_path):
    """WSD is the constant schedule until its decay: a constant run's checkpoint continued in a new folder with
    lr_scheduler=wsd reaches bit for bit the weights of the wsd run trained from the start, leaves the parent run
    untouched, and picks its best model among its own validations."""
    constant = TrainingConfig(epochs=2, batch_size=32, warmup_steps=1, learning_rate=1e-3, lr_scheduler="constant",
                              checkpoint_every_steps=2, keep_checkpoints=10)
    wsd = dataclasses.replace(constant, lr_scheduler="wsd", decay_steps=4)  # 8 steps: the decay starts at step 4
    parent, _ = _train(tmp_path / "constant", constant)
    parent_files = sorted(p.relative_to(tmp_path) for p in (tmp_path / "constant").rglob("*"))
    scratch, _ = _train(tmp_path / "wsd", wsd)
    branch, calls = _train(tmp_path / "branch", wsd, resume=tmp_path / "constant" / "checkpoints" / "step-00000004")
    assert branch.resumed_from == tmp_path / "constant" / "checkpoints" / "step-00000004" and branch.steps == 8
    _assert_same_weights(_weights(latest_checkpoint(tmp_path / "wsd" / "checkpoints")),
                         _weights(latest_checkpoint(tmp_path / "branch" / "checkpoints")))
    assert not _weights(latest_checkpoint(tmp_path / "constant" / "checkpoints"))["shared.weight"].equal(
        _weights(latest_checkpoint(tmp_path / "branch" / "checkpoints"))["shared.weight"])  # the decay changed something
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "constant").rglob("*")) == parent_files
    # Validation after epochs 1 (step 4, the parent's) and 2: the branch ran the second only, and it is its best.
    assert calls == 1 and branch.best_step == 8 and (tmp_path / "branch" / "best").is_dir()
    assert [row["step"] for row in branch.learning_curve] == [4, 8] and parent.best_step in (4, 8)
    # Where the decay would have begun before the checkpoint, the schedules disagree on steps already taken.
    with pytest.raises(ValueError, match="lr_scheduler: 'constant' -> 'wsd'"):
        _train(tmp_path / "late", wsd, resume=tmp_path / "constant" / "checkpoints" / "step-00000006")
    short_decay = dataclasses.replace(wsd, decay_steps=2)  # decay over steps 6-8: the constant part still agrees
    late, _ = _train(tmp_path / "late", short_decay, resume=tmp_path / "constant" / "checkpoints" / "step-00000006")
    assert late.steps == 8 and late.resumed_from.name == "step-00000006"


def test_a_long_runs_constant_phase_branched_into_an_earlier_decay(tmp_path):
    """A wsd run budgeted for 16 steps (decay from step 12), branched at step 6 into 8 steps with a decay from step 6:
    each schedule is judged over its own run's length (both constant until step 6), and the branch equals the short
    run trained from scratch."""
    long = TrainingConfig(epochs=4, batch_size=32, warmup_steps=1, learning_rate=1e-3, lr_scheduler="wsd", decay_steps=4,
                          checkpoint_every_steps=2, keep_checkpoints=10)
    short = dataclasses.replace(long, epochs=2, decay_steps=2)
    _train(tmp_path / "long", long)
    scratch, _ = _train(tmp_path / "short", short)
    branch, _ = _train(tmp_path / "branch", short, resume=tmp_path / "long" / "checkpoints" / "step-00000006")
    assert branch.resumed_from.name == "step-00000006" and branch.steps == scratch.steps == 8
    _assert_same_weights(_weights(latest_checkpoint(tmp_path / "short" / "checkpoints")),
                         _weights(latest_checkpoint(tmp_path / "branch" / "checkpoints")))
    # A decay that would have begun before the checkpoint still disagrees with the steps taken.
    with pytest.raises(ValueError, match="decay_steps: 4 -> 3"):
        _train(tmp_path / "early", dataclasses.replace(short, decay_steps=3), resume=tmp_path / "long" / "checkpoints" / "step-00000006")


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path, caplog):
    cfg = TrainingConfig(epochs=2, batch_size=32, warmup_steps=1, checkpoint_every_steps=2, keep_checkpoints=10)
    full, _ = _train(tmp_path / "full", cfg)
    run = tmp_path / "run"
    for step in (4, 6):  # the run was killed after step 6
        shutil.copytree(tmp_path / "full" / "checkpoints" / f"step-0000000{step}", run / "checkpoints" / f"step-0000000{step}")
    (run / "checkpoints" / "step-00000006" / "random_states_0.pkl").write_bytes(b"damaged")
    with caplog.at_level("WARNING"):
        resumed, _ = _train(run, cfg, resume=True)
    assert resumed.resumed_from == run / "checkpoints" / "step-00000004"
    assert any("step-00000006 cannot be loaded" in r.getMessage() for r in caplog.records)
    _assert_same_weights(_weights(latest_checkpoint(tmp_path / "full" / "checkpoints")), _weights(latest_checkpoint(run / "checkpoints")))
    # With no intact checkpoint left, the damage is an error, not a silent fresh start.
    only = tmp_path / "only"
    shutil.copytree(run / "checkpoints" / "step-00000008", only / "checkpoints" / "step-00000008")
    (only / "checkpoints" / "step-00000008" / "random_states_0.pkl").write_bytes(b"damaged")
    with pytest.raises(RuntimeError, match="random number generator states were not restored"):
        _train(only, cfg, resume=True)


@pytest.mark.slow
def test_the_recipe_refuses_a_foreign_folder_and_a_changed_model_on_resume(tmp_path):
    from genrec.recipes import train_genrec

    data, tok = make_dataset(tmp_path)
    foreign = tmp_path / "my_documents"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    with pytest.raises(FileExistsError, match="holds no genrec run"):
        train_genrec.main(recipe_args(data, tok, foreign, *TINY_T5, "training.epochs=1"))
    assert (foreign / "thesis.tex").read_text() == "keep me" and sorted(p.name for p in foreign.iterdir()) == ["thesis.tex"]

    out = tmp_path / "run"
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    train_genrec.main(recipe_args(data, tok, out, *TINY_T5, "training.epochs=1", "training.mixed_precision=no"))
    AcceleratorState._reset_state(reset_partial_state=True)
    with pytest.raises(ValueError, match=r"--resume with a different model"):
        train_genrec.main(["--resume", *recipe_args(data, tok, out, *TINY_T5, "model.d_model=48", "training.epochs=1",
                                                    "training.mixed_precision=no")])


@pytest.mark.slow
def test_the_recipe_branches_a_run_into_a_decay_and_continues_the_branch(tmp_path):
    """``--branch-from CHECKPOINT``: another run's checkpoint continued in a new folder with a new schedule; rerun,
    the command continues the branch's own checkpoints; a different model is refused."""
    from accelerate.state import AcceleratorState

    from genrec.recipes import train_genrec

    data, tok = make_dataset(tmp_path)
    common = [*TINY_T5, "training.mixed_precision=no", "training.lr_scheduler=constant", "training.checkpoint_every_steps=2",
              "training.keep_checkpoints=20", "eval.final_validation=false"]
    AcceleratorState._reset_state(reset_partial_state=True)
    parent = train_genrec.main(recipe_args(data, tok, tmp_path / "parent", *common, "training.max_steps=4"))
    branch_point = tmp_path / "parent" / "checkpoints" / "step-00000004"
    assert parent["steps"] == 4 and branch_point.is_dir()
    decay = [*common, "training.lr_scheduler=wsd", "training.decay_steps=4", "training.max_steps=8"]
    AcceleratorState._reset_state(reset_partial_state=True)
    branch = train_genrec.main(["--branch-from", str(branch_point), *recipe_args(data, tok, tmp_path / "branch", *decay)])
    assert branch["steps"] == 8 and branch["resumed_from"] == str(branch_point) and branch["best_step"] > 4
    assert json.loads((tmp_path / "branch" / "config.json").read_text())["training"]["lr_scheduler"] == "wsd"
    # The same command again: the branch is finished, so it continues from its own newest checkpoint (step 8).
    AcceleratorState._reset_state(reset_partial_state=True)
    again = train_genrec.main(["--branch-from", str(branch_point), *recipe_args(data, tok, tmp_path / "branch", *decay)])
    assert again["steps"] == 8 and Path(again["resumed_from"]).parent == tmp_path / "branch" / "checkpoints"
    AcceleratorState._reset_state(reset_partial_state=True)
    with pytest.raises(ValueError, match=r"--resume with a different model"):
        train_genrec.main(["--branch-from", str(branch_point),
                           *recipe_args(data, tok, tmp_path / "other", *decay, "model.d_model=48")])


def test_resume_accepts_a_run_saved_before_a_setting_existed(tmp_path):
    """A setting added in a later release is absent from an older run's config.json: it takes its default
    there, so it is not a change; a real change of the model still is."""
    from genrec.config import load_config
    from genrec.recipes import train_genrec

    cfg = load_config(train_genrec.GenRecConfig, None, ["dataset=amazon_beauty", "tokenizer_dir=tok"])
    saved = dataclasses.asdict(cfg)
    del saved["model"]["causal"]["prompt_eos"]  # written before model.causal.prompt_eos was added
    path = tmp_path / "config.json"
    path.write_text(json.dumps(saved))
    train_genrec.check_resumable(path, cfg)

    bigger = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, d_model=cfg.model.d_model * 2))
    with pytest.raises(ValueError, match=r"--resume with a different model"):
        train_genrec.check_resumable(path, bigger)
    changed_default = dataclasses.replace(cfg, model=dataclasses.replace(
        cfg.model, causal=dataclasses.replace(cfg.model.causal, prompt_eos=False)))
    with pytest.raises(ValueError, match=r"--resume with a different model"):
        train_genrec.check_resumable(path, changed_default)


def test_a_run_tested_on_the_first_users_writes_their_per_user_metrics(tmp_path):
    """eval.test_max_users=N still writes per_user_test.json (those N users), so short runs pair user by user."""
    from accelerate.state import AcceleratorState

    from genrec.recipes import train_genrec

    data, tok = make_dataset(tmp_path)
    out = tmp_path / "run"
    AcceleratorState._reset_state(reset_partial_state=True)
    train_genrec.main(recipe_args(data, tok, out, *TINY_T5, "training.epochs=1", "training.mixed_precision=no",
                                  "eval.test_max_users=5", "eval.final_validation=false"))
    per_user = json.loads((out / "per_user_test.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert per_user["num_users"] == 5 and sorted(per_user["user_index"]) == per_user["user_index"]
    assert sum(per_user["recall@10"]) / 5 == pytest.approx(metrics["test"]["recall@10"])
    # The top-1 diagnostics cover the same users; a top-1 hit is a hit at 5 too.
    assert metrics["test_top1"]["top1_users"] == 5 and metrics["test_top1"]["top1_hit_share"] <= metrics["test"]["recall@5"]


@pytest.mark.slow
def test_the_recipe_starts_a_fresh_run_from_another_runs_weights(tmp_path):
    """``--init-from MODEL_DIR``: a new run whose first weights are the saved model's (at learning rate 1e-30 they stay
    so: its best model equals the source's), recorded in metrics.json; a model of another shape is refused by name."""
    from accelerate.state import AcceleratorState

    from genrec.recipes import train_genrec

    data, tok = make_dataset(tmp_path)
    common = [*TINY_T5, "training.mixed_precision=no", "training.max_steps=3", "eval.final_validation=false"]
    AcceleratorState._reset_state(reset_partial_state=True)
    train_genrec.main(recipe_args(data, tok, tmp_path / "source", *common))
    source = tmp_path / "source" / "best"
    AcceleratorState._reset_state(reset_partial_state=True)
    frozen = train_genrec.main(["--init-from", str(source),
                                *recipe_args(data, tok, tmp_path / "frozen", *common, "training.learning_rate=1.0e-30",
                                             "training.seed=7")])
    assert frozen["init_from"] == str(source)
    _assert_same_weights(_weights(tmp_path / "frozen" / "best"), _weights(source))
    AcceleratorState._reset_state(reset_partial_state=True)
    fresh = train_genrec.main(recipe_args(data, tok, tmp_path / "fresh", *common, "training.learning_rate=1.0e-30", "training.seed=7"))
    assert fresh["init_from"] is None
    assert not torch.equal(_weights(tmp_path / "fresh" / "best")["shared.weight"], _weights(source)["shared.weight"])
    AcceleratorState._reset_state(reset_partial_state=True)
    with pytest.raises(ValueError, match=r"--init-from .*differs from this config's"):
        train_genrec.main(["--init-from", str(source), *recipe_args(data, tok, tmp_path / "other", *common, "model.d_ff=96")])
