import json

import numpy as np
import pytest
import torch

from genrec.models import build_t5
from genrec.training import LengthBucketBatchSampler, TrainingConfig, train
from genrec.vocab import SIDVocab
from tests.helpers import TRAINING_T5, collate_toy_rows, toy_rows

pytestmark = pytest.mark.usefixtures("fresh_accelerator_state")  # each test picks its own mixed precision


def test_bucketing_yields_every_example_once_and_is_reproducible():
    lengths = np.random.default_rng(0).integers(1, 80, size=1003)
    sampler = LengthBucketBatchSampler(lengths, batch_size=32, seed=7, bucket_factor=4)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(1003))
        epochs.append(flat)
    assert epochs[0] != epochs[1]  # a new order every epoch
    again = LengthBucketBatchSampler(lengths, batch_size=32, seed=7, bucket_factor=4)
    again.set_epoch(1)
    assert [i for b in again for i in b] == epochs[1]
    # Batches are length-homogeneous: mean within-batch spread far below the global spread.
    spread = np.mean([np.ptp(lengths[b]) for b in batches if len(b) > 1])
    assert spread < 0.5 * np.ptp(lengths)


def test_the_one_short_batch_comes_last():
    """Accelerate's BatchSamplerShard takes a short batch for the end of the data: a short batch in the
    middle made 2-process training skip batches (5 per process expected, 4 seen)."""
    for n, factor in ((152, 50), (1003, 4), (1003, 1), (64, 2)):
        sampler = LengthBucketBatchSampler(np.arange(n) % 17, batch_size=16, seed=1, bucket_factor=factor)
        for epoch in range(3):
            sampler.set_epoch(epoch)
            sizes = [len(b) for b in sampler]
            assert all(size == 16 for size in sizes[:-1]) and sizes[-1] == (n % 16 or 16)


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_train_learns_and_keeps_best_checkpoint(tmp_path, precision):
    vocab = SIDVocab((4, 2, 1))
    torch.manual_seed(0)
    model = build_t5(vocab, TRAINING_T5)
    ds = toy_rows(vocab)
    calls = []

    def validate(m, acc):
        # Teacher-forced loss on the training rows as a stand-in metric: higher is better.
        batch = collate_toy_rows([ds[i] for i in range(len(ds))])
        with torch.no_grad():
            out = m(**batch)
        assert out.logits.dtype == torch.float32  # validation runs in fp32 even when training in bf16
        loss = out.loss.item()
        calls.append(loss)
        return {"ndcg@10": -loss}

    cfg = TrainingConfig(epochs=6, batch_size=16, learning_rate=1e-2, warmup_steps=2, mixed_precision=precision, seed=3)
    result = train(model, ds, collate_toy_rows, cfg, tmp_path, validate_fn=validate)
    assert len(calls) == 6 and calls[-1] < calls[0]  # it learned
    assert result.best_metric == pytest.approx(-min(calls))
    assert result.best_epoch == int(np.argmin(calls))
    hist = json.loads((tmp_path / "train_history.json").read_text())
    assert [e["epoch"] for e in hist["epochs"]] == list(range(6))
    # The saved best model reproduces the best validation value.
    from transformers import T5ForConditionalGeneration

    reloaded = T5ForConditionalGeneration.from_pretrained(result.best_dir)
    assert validate(reloaded, None)["ndcg@10"] == pytest.approx(result.best_metric, abs=1e-5)


def test_bf16_training_stays_bf16_after_validation(tmp_path):
    """Validation strips the autocast wrapper temporarily; training must get it back."""
    vocab = SIDVocab((4, 2, 1))
    model = build_t5(vocab, TRAINING_T5)
    dtypes = []
    model.lm_head.register_forward_hook(lambda mod, inp, out: dtypes.append(out.dtype) if mod.training else None)
    cfg = TrainingConfig(epochs=2, batch_size=64, mixed_precision="bf16", warmup_steps=1)
    train(model, toy_rows(vocab), collate_toy_rows, cfg, tmp_path, validate_fn=lambda m, a: {"ndcg@10": 0.0})
    assert dtypes and all(d == torch.bfloat16 for d in dtypes)


def test_max_steps_budget_stops_and_still_validates(tmp_path):
    vocab = SIDVocab((4, 2, 1))
    model = build_t5(vocab, TRAINING_T5)
    cfg = TrainingConfig(epochs=50, max_steps=3, batch_size=16, warmup_steps=1)
    seen = []
    result = train(model, toy_rows(vocab), collate_toy_rows, cfg, tmp_path, validate_fn=lambda m, a: seen.append(1) or {"ndcg@10": 0.0})
    assert result.steps == 3 and len(seen) == 1 and (tmp_path / "best" / "model.safetensors").exists()


def test_unknown_metric_for_best_is_an_error(tmp_path):
    vocab = SIDVocab((4, 2, 1))
    cfg = TrainingConfig(epochs=1, batch_size=16, metric_for_best="ndcg@10")
    with pytest.raises(KeyError, match="metric_for_best"):
        train(build_t5(vocab, TRAINING_T5), toy_rows(vocab), collate_toy_rows, cfg, tmp_path, validate_fn=lambda m, a: {"recall@10": 0.1})


def test_bf16_and_fp32_train_on_the_same_batches(tmp_path):
    """Precision changes the arithmetic, never the data order: same seed -> same batches."""
    vocab = SIDVocab((4, 2, 1))
    ds = toy_rows(vocab, n=100)
    seen = {}
    for precision in ("no", "bf16"):
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
        batches = []

        def collate(rows, batches=batches):
            batches.append(tuple(r["user_index"] for r in rows))
            return collate_toy_rows(rows)

        cfg = TrainingConfig(epochs=2, batch_size=16, mixed_precision=precision, seed=11, bucket_factor=3)
        train(build_t5(vocab, TRAINING_T5), ds, collate, cfg, tmp_path / precision)
        seen[precision] = batches
    assert seen["no"] == seen["bf16"]
    assert len(seen["no"]) == 2 * len(LengthBucketBatchSampler(ds["length"], 16, bucket_factor=3))


@pytest.mark.parametrize("name", ["constant", "inverse_sqrt", "cosine", "wsd"])
def test_lr_schedules_after_warmup(tmp_path, name):
    """Each schedule's learning rate at every optimizer step, recorded from the optimizer itself."""
    vocab = SIDVocab((4, 2, 1))
    model = build_t5(vocab, TRAINING_T5)
    lrs = []
    cfg = TrainingConfig(epochs=4, batch_size=16, learning_rate=1e-2, warmup_steps=4, lr_scheduler=name,
                         decay_steps=6 if name == "wsd" else None)

    def collate(rows):
        return collate_toy_rows(rows)

    class Spy(torch.optim.AdamW):
        def step(self, *a, **k):
            lrs.append(self.param_groups[0]["lr"])
            return super().step(*a, **k)

    import genrec.training.trainer as trainer_module

    original = trainer_module.torch.optim.AdamW
    trainer_module.torch.optim.AdamW = Spy
    try:
        train(model, toy_rows(vocab), collate, cfg, tmp_path)
    finally:
        trainer_module.torch.optim.AdamW = original
    assert len(lrs) == 16  # 4 batches x 4 epochs
    assert lrs[:4] == pytest.approx([0.0, 2.5e-3, 5e-3, 7.5e-3])  # linear warmup, shared by all schedules
    after = np.array(lrs[4:])
    if name == "constant":
        assert after == pytest.approx(1e-2)
    elif name == "inverse_sqrt":
        assert after == pytest.approx(1e-2 / np.sqrt(np.arange(4, 16) / 4))
    elif name == "wsd":  # constant over steps 4-9, then half a cosine over the last 6 steps
        assert after[:6] == pytest.approx(1e-2)
        assert after[6:] == pytest.approx(1e-2 * 0.5 * (1 + np.cos(np.pi * np.arange(6) / 6)))
    else:
        assert after[0] == pytest.approx(1e-2) and np.all(np.diff(after) < 0) and after[-1] < 1e-3


def test_unknown_lr_schedule_is_an_error(tmp_path):
    vocab = SIDVocab((4, 2, 1))
    with pytest.raises(ValueError, match="lr_scheduler"):
        train(build_t5(vocab, TRAINING_T5), toy_rows(vocab), collate_toy_rows, TrainingConfig(lr_scheduler="linear"), tmp_path)
    with pytest.raises(ValueError, match="decay_steps goes with lr_scheduler: wsd"):
        TrainingConfig(lr_scheduler="wsd")
    with pytest.raises(ValueError, match="decay_steps goes with lr_scheduler: wsd"):
        TrainingConfig(lr_scheduler="constant", decay_steps=100)


def test_validation_every_n_steps_writes_the_learning_curve(tmp_path):
    vocab = SIDVocab((4, 2, 1))
    ds = toy_rows(vocab, n=100)  # 7 batches of 16 an epoch
    cfg = TrainingConfig(epochs=2, batch_size=16, warmup_steps=1, eval_every_steps=3, eval_every_epochs=100, lr_scheduler="constant")
    steps = []
    result = train(build_t5(vocab, TRAINING_T5), ds, collate_toy_rows, cfg, tmp_path,
                   validate_fn=lambda m, a: steps.append(1) or {"ndcg@10": float(len(steps)), "recall@10": 0.5})
    # Steps 3, 6, 9, 12 and the last step (14, end of training); never twice at one step.
    import csv

    rows = list(csv.DictReader(open(tmp_path / "learning_curve.csv")))
    assert [int(r["step"]) for r in rows] == [3, 6, 9, 12, 14] == [c["step"] for c in result.learning_curve]
    assert len(steps) == 5
    assert [int(r["examples_seen"]) for r in rows] == [48, 96, 100 + 32, 100 + 80, 200]
    assert [float(r["ndcg@10"]) for r in rows] == [1, 2, 3, 4, 5] and all(float(r["recall@10"]) == 0.5 for r in rows)
    assert all(float(r["train_loss"]) > 0 and float(r["learning_rate"]) > 0 for r in rows)
    assert result.best_step == 14 and result.examples_seen == 200


def test_learning_curve_columns_stay_in_order_across_a_resume(tmp_path):
    """Rows restored from a checkpoint (stored as JSON with sorted keys) keep the curve's column order."""
    import csv

    from accelerate.state import AcceleratorState

    vocab = SIDVocab((4, 2, 1))
    cfg = TrainingConfig(epochs=2, batch_size=16, warmup_steps=1, eval_every_steps=3, eval_every_epochs=100,
                         checkpoint_every_steps=3, lr_scheduler="constant")
    calls = []

    def validate(model, accelerator):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # a kill after the checkpoint of step 6
        return {"recall@5": 0.1, "ndcg@5": 0.05, "recall@10": 0.2, "ndcg@10": float(len(calls))}

    with pytest.raises(KeyboardInterrupt):
        train(build_t5(vocab, TRAINING_T5), toy_rows(vocab, n=100), collate_toy_rows, cfg, tmp_path, validate_fn=validate)
    AcceleratorState._reset_state(reset_partial_state=True)
    train(build_t5(vocab, TRAINING_T5), toy_rows(vocab, n=100), collate_toy_rows, cfg, tmp_path, resume=True, validate_fn=validate)
    with open(tmp_path / "learning_curve.csv") as f:
        header, *rows = list(csv.reader(f))
    assert header == ["step", "epoch", "examples_seen", "train_seconds", "cpu_seconds", "train_loss", "learning_rate",
                      "recall@5", "ndcg@5", "recall@10", "ndcg@10"]
    assert [int(r[0]) for r in rows] == [3, 6, 9, 12, 14]


def test_early_stopping_after_patience_validations_without_improvement(tmp_path):
    vocab = SIDVocab((4, 2, 1))
    values = iter([0.1, 0.3, 0.2, 0.25, 0.3, 0.9, 0.9, 0.9])  # best 0.3 at the 2nd; 3 without a new best -> stop
    cfg = TrainingConfig(epochs=50, batch_size=16, warmup_steps=1, eval_every_steps=2, eval_every_epochs=100,
                         early_stopping_patience=3, checkpoint_every_steps=4)
    result = train(build_t5(vocab, TRAINING_T5), toy_rows(vocab, n=100), collate_toy_rows, cfg, tmp_path,
                   validate_fn=lambda m, a: {"ndcg@10": next(values)})
    assert result.early_stopped and result.steps == 10 and result.best_step == 4 and result.best_metric == 0.3
    assert len(result.learning_curve) == 5
    # The stop is final: resuming re-reads the result instead of training on.
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    again = train(build_t5(vocab, TRAINING_T5), toy_rows(vocab, n=100), collate_toy_rows, cfg, tmp_path, resume=True,
                  validate_fn=lambda m, a: pytest.fail("validated after an early stop"))
    assert again.early_stopped and again.steps == 10 and again.best_step == 4


def test_auto_precision_follows_the_hardware(monkeypatch):
    from genrec.training import resolve_mixed_precision

    assert resolve_mixed_precision("auto", device="cpu", flags={"avx2", "avx512f", "avx512_bf16"}) == "bf16"
    assert resolve_mixed_precision("auto", device="cpu", flags={"avx2", "amx_bf16", "amx_tile"}) == "bf16"
    assert resolve_mixed_precision("auto", device="cpu", flags={"avx2", "fma"}) == "no"  # AVX2 only: bf16 is slower
    assert resolve_mixed_precision("auto", device="cpu", flags=set()) == "no"  # no /proc/cpuinfo (macOS)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_mixed_precision("auto", device="cuda") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_mixed_precision("auto", device="cuda") == "no"
    for explicit in ("no", "bf16", "fp16"):
        assert resolve_mixed_precision(explicit, device="cpu", flags=set()) == explicit
    with pytest.raises(ValueError, match="mixed_precision"):
        resolve_mixed_precision("fp8")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    from genrec.training.hardware import cpu_flags

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


def test_thread_count_from_the_setting_the_environment_or_the_free_cores(monkeypatch):
    from genrec.training import choose_num_threads

    assert choose_num_threads(3)[0] == 3
    with pytest.raises(ValueError, match="num_threads"):
        choose_num_threads(0)
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert choose_num_threads(None) == (5, "OMP_NUM_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert choose_num_threads(None, cpu_count=2, load=0.1)[0] == 2  # idle machine: every core
    assert choose_num_threads(None, cpu_count=2, load=1.2)[0] == 1  # another job holds a core
    assert choose_num_threads(None, cpu_count=2, load=6.0)[0] == 1  # overloaded: still one thread
    assert choose_num_threads(None, cpu_count=16, load=3.4)[0] == 13


def test_cpu_share_monitor_warns_once_when_the_cores_are_shared(monkeypatch, caplog):
    import genrec.training.hardware as hw

    clock = {"wall": 0.0, "cpu": 0.0}
    monkeypatch.setattr(hw.time, "perf_counter", lambda: clock["wall"])
    monkeypatch.setattr(hw.time, "process_time", lambda: clock["cpu"])
    monitor = hw.CpuShareMonitor(threads=2, threshold=0.6, min_seconds=30)
    clock.update(wall=10.0, cpu=5.0)
    assert monitor.update() is None  # too early to tell
    clock.update(wall=40.0, cpu=76.0)  # 95% of 2 threads x 40 s: alone on the machine
    with caplog.at_level("WARNING"):
        assert monitor.update() == pytest.approx(0.95) and not caplog.records
        clock.update(wall=100.0, cpu=100.0)  # 50%: another job shares the cores
        assert monitor.update() == pytest.approx(0.5)
        monitor.update()
    assert len([r for r in caplog.records if "other jobs share the cores" in r.getMessage()]) == 1


def test_a_wall_clock_budget_ending_in_warmup_is_reported(tmp_path, caplog):
    vocab = SIDVocab((4, 2, 1))
    cfg = TrainingConfig(epochs=5, batch_size=16, warmup_steps=100, max_train_minutes=1e-9)
    with caplog.at_level("WARNING"):
        result = train(build_t5(vocab, TRAINING_T5), toy_rows(vocab), collate_toy_rows, cfg, tmp_path)
    assert result.steps == 1
    assert any("ended during the learning-rate warmup (step 1 of 10 warmup steps)" in r.getMessage() for r in caplog.records)


def test_busy_cores_are_read_from_proc_stat(tmp_path, monkeypatch):
    import genrec.training.hardware as hw

    stat = tmp_path / "stat"
    reads = iter(["cpu  100 0 100 800 0 0 0 0 0 0\n", "cpu  200 0 200 900 0 0 0 0 0 0\n"])  # 200 busy of 300 jiffies
    monkeypatch.setattr(hw.Path, "read_text", lambda self: next(reads))
    monkeypatch.setattr(hw.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert hw.busy_cores(interval=0, stat=stat) == pytest.approx(2.0)  # 3 cores x 2/3 busy
