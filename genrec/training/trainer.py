"""The Accelerate training loop for SID recommenders (seq2seq, decoder-only, or a LoRA-wrapped LM).

One function, readable top to bottom: build the data loader (length-bucketed, seeded, resumable),
AdamW + a warmup then ``constant`` / ``inverse_sqrt`` / ``cosine`` schedule, train for ``epochs``
(or until ``max_steps`` / ``max_train_minutes``, or until validation stops improving for
``early_stopping_patience`` validations), validate with the *caller's* ``validate_fn`` (genrec never
imports genrec.eval: the recipe passes the evaluation in) after epochs and/or every
``eval_every_steps`` optimizer steps, keep the best model by ``metric_for_best``, write a history
JSON and the learning curve (``learning_curve.csv``: one row per validation with steps, examples
seen, training time, loss, learning rate and the metrics), and write resumable checkpoints. Works
under ``python`` and ``accelerate launch`` alike.

For GPUs, where per-step Python overhead rivals a tiny model's step: ``resident_batches`` keeps the collated
training set on the device and gathers each batch by index (:mod:`genrec.training.resident`; the same batches,
bit for bit), ``pad_to_multiple_of`` bounds the number of batch shapes, and ``compile`` runs the training
forward through ``torch.compile`` (``compile_mode: reduce-overhead`` = CUDA graphs). For CPUs: ``fast_dropout``
draws dropout masks from random bits instead of torch's Bernoulli sampler (:mod:`genrec.training.fast_dropout`).

Resumable checkpoints (``output_dir/checkpoints/step-XXXXXXXX/``) are written every
``checkpoint_every_steps`` optimizer steps, every ``checkpoint_every_minutes``, at the end of every
epoch (after validation) and when training stops. Each is written into a temporary folder, flushed
to disk and published by one rename, so a crash at any instant leaves the previous checkpoint
intact. It holds what ``Accelerator.save_state`` saves (model, optimizer, LR scheduler, the
Accelerate step counter and every process's Python/NumPy/torch RNG states; sharded under
FSDP/DeepSpeed) plus ``trainer_state.json``: the data position (epoch and the number of batches
each process has consumed in it), step count, elapsed training time, best metric and the history.
``train(..., resume=True)`` continues from the newest one: the sampler is seeded per epoch, so the
epoch's batch order is rebuilt and the consumed batches are skipped (``skip_first_batches``); the RNG
states are put back right before the first resumed batch, so dropout draws the same numbers as in an
uninterrupted run. Resuming needs the same number of processes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, broadcast, broadcast_object_list, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import (
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
    get_inverse_sqrt_schedule,
    get_wsd_schedule,
)

from genrec.config import check_positive, require
from genrec.training.checkpoint import (
    CHECKPOINT_NAME,
    TRAINER_STATE,
    RunLock,
    atomic_write_json,
    atomic_write_text,
    checkpoint_dir,
    list_checkpoints,
    new_tmp_dir,
    publish_checkpoint,
    remove_checkpoints,
    replace_dir,
    rng_fingerprint,
)
from genrec.training.fast_dropout import use_fast_dropout
from genrec.training.hardware import PRECISIONS, CpuShareMonitor, resolve_mixed_precision
from genrec.training.resident import ResidentBatches
from genrec.training.sampler import LengthBucketBatchSampler

logger = logging.getLogger(__name__)

ValidateFn = Callable[[torch.nn.Module, Accelerator], dict[str, float]]
MODEL_INPUTS = ("input_ids", "attention_mask", "labels", "position_ids", "target_starts")
LR_SCHEDULERS = ("constant", "inverse_sqrt", "cosine", "wsd")
COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_METRIC_NAME = re.compile(r"(recall|ndcg)@[1-9]\d*")
# Settings that define the optimisation: changing one on resume makes the run something else (budgets,
# validation and checkpoint frequencies may change: they extend or observe a run without altering it).
RUN_DEFINING = ("batch_size", "learning_rate", "lr_scheduler", "weight_decay", "warmup_steps", "max_grad_norm", "grad_accum_steps",
                "mixed_precision", "length_bucketing", "bucket_factor", "seed", "metric_for_best", "decay_steps")
# Settings that only shape the learning-rate schedule: changing them on resume changes nothing already done when
# the schedule's factors agree on every step taken so far (a constant run resumed into wsd, a wsd decay moved later).
SCHEDULE_SETTINGS = ("lr_scheduler", "warmup_steps", "decay_steps")


class ResumeError(ValueError):
    """A checkpoint that must not be resumed with these settings (never skipped for an older checkpoint)."""
LEARNING_CURVE = "learning_curve.csv"


@dataclass
class TrainingConfig:
    """Optimisation budget. ``batch_size`` is per process; effective = batch_size * processes * grad_accum_steps."""

    epochs: int = 10
    max_steps: int | None = None
    max_train_minutes: float | None = None  # stop (and still evaluate) after this wall time (counted across resumes)
    batch_size: int = 256
    learning_rate: float = 1e-3
    lr_scheduler: str = "cosine"  # after linear warmup: "constant" | "inverse_sqrt" | "cosine" (to 0 at the last step) | "wsd"
    # wsd (warmup-stable-decay): constant, then a cosine decay to 0 over the last decay_steps optimizer steps. Up to
    # its decay it is the constant schedule, so a constant run's checkpoint can be resumed (or branched) into it.
    decay_steps: int | None = None
    weight_decay: float = 0.035
    warmup_steps: int = 500  # optimizer steps, whatever the number of processes
    max_grad_norm: float = 1.0
    grad_accum_steps: int = 1
    mixed_precision: str = "auto"  # "auto" (bf16 where the hardware has it natively, else fp32) | "no" | "bf16" | "fp16"
    num_threads: int | None = None  # torch threads on CPU, set by the recipes (None: $OMP_NUM_THREADS, else the free cores)
    length_bucketing: bool = True  # False: plain shuffled batches (bucket_factor 1)
    bucket_factor: int = 50
    eval_every_epochs: int = 1  # validate after every N epochs (and after the last)
    eval_every_steps: int | None = None  # ... and every N optimizer steps (None = only after epochs)
    early_stopping_patience: int | None = None  # stop after N validations in a row without a new best (None = never)
    metric_for_best: str = "ndcg@10"
    log_every_steps: int = 50
    num_workers: int = 0
    # GPU paths (exercised on CPU by the tests; they pay where per-step Python and launch overheads dominate):
    resident_batches: bool = False  # the collated training set on the device once; batches gathered by index
    pad_to_multiple_of: int | None = None  # resident batches: padded widths rounded up (fewer shapes to compile)
    compile: bool = False  # torch.compile the training forward (validation and saving use the plain model)
    compile_backend: str = "inductor"
    compile_mode: str | None = None  # e.g. "reduce-overhead" (CUDA graphs), "max-autotune"
    fast_dropout: bool = False  # nn.Dropout masks from 16 random bits per element (1.09-1.19x cheaper CPU steps; fast_dropout.py)
    seed: int = 42
    checkpoint_every_steps: int | None = None  # resumable checkpoint every N optimizer steps (None = off)
    checkpoint_every_minutes: float | None = None  # ... and/or every N minutes of training
    checkpoint_at_epoch_end: bool = True  # ... and after every epoch's validation (with any of these: also at the end)
    keep_checkpoints: int = 1  # newest resumable checkpoints kept
    allow_config_change_on_resume: bool = False  # resume even if a RUN_DEFINING setting differs from the checkpoint's

    def __post_init__(self):
        """Every value checked when the config is built: nothing fails after the budget is spent."""
        check_positive(self, "epochs", "batch_size", "grad_accum_steps", "bucket_factor", "eval_every_epochs", "log_every_steps",
                       "keep_checkpoints")
        check_positive(self, "max_steps", "eval_every_steps", "early_stopping_patience", "checkpoint_every_steps", "num_threads",
                       "pad_to_multiple_of", allow_none=True)
        check_positive(self, "warmup_steps", "num_workers", "weight_decay", "max_grad_norm", minimum=0)
        for name in ("max_train_minutes", "checkpoint_every_minutes"):
            value = getattr(self, name)
            require(value is None or value > 0, f"{name} must be > 0 or null, got {value!r}")
        require(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate!r}")
        require(self.lr_scheduler in LR_SCHEDULERS, f"lr_scheduler must be one of {LR_SCHEDULERS}, got {self.lr_scheduler!r}")
        check_positive(self, "decay_steps", allow_none=True)
        require((self.decay_steps is not None) == (self.lr_scheduler == "wsd"),
                f"decay_steps goes with lr_scheduler: wsd (the decay's length in optimizer steps), got lr_scheduler "
                f"{self.lr_scheduler!r} and decay_steps {self.decay_steps!r}")
        require(self.mixed_precision in PRECISIONS, f"mixed_precision must be one of {PRECISIONS}, got {self.mixed_precision!r}")
        require(not self.resident_batches or self.num_workers == 0,
                f"resident_batches gathers batches on the device: num_workers must be 0, got {self.num_workers}")
        require(self.pad_to_multiple_of is None or self.resident_batches,
                "pad_to_multiple_of rounds the widths of resident batches: set resident_batches: true as well")
        require(self.compile_mode in COMPILE_MODES, f"compile_mode must be one of {COMPILE_MODES}, got {self.compile_mode!r}")
        require(_METRIC_NAME.fullmatch(self.metric_for_best) is not None,
                f"metric_for_best must be recall@K or ndcg@K, got {self.metric_for_best!r}")


@dataclass
class TrainResult:
    best_metric: float | None
    best_epoch: int | None
    best_dir: Path | None
    steps: int
    train_seconds: float
    history: list[dict] = field(default_factory=list)
    resumed_from: Path | None = None
    best_step: int | None = None
    examples_seen: int = 0
    learning_curve: list[dict] = field(default_factory=list)
    early_stopped: bool = False
    cpu_seconds: float = 0.0  # CPU time of this process's training steps (validation excluded), across resumes


@dataclass
class _Position:
    """Where training is: everything of ``trainer_state.json`` except the config."""

    epoch: int = 0
    batches_done: int = 0  # batches this process consumed in ``epoch``
    steps: int = 0
    train_seconds: float = 0.0
    best_metric: float | None = None
    best_epoch: int | None = None
    history: list[dict] = field(default_factory=list)
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0
    epoch_examples: int = 0
    epoch_seconds: float = 0.0
    stopped: bool = False  # the budget ended training: resuming only re-reads the result
    num_processes: int = 1
    best_step: int | None = None
    examples_seen: int = 0  # training rows consumed by all processes together
    learning_curve: list[dict] = field(default_factory=list)
    validations_since_best: int = 0
    early_stopped: bool = False
    cpu_seconds: float = 0.0  # this process's CPU time in training steps (all its threads; validation excluded)


def train(
    model: torch.nn.Module,
    train_dataset,
    collator: Callable,
    cfg: TrainingConfig,
    output_dir: str | Path,
    validate_fn: ValidateFn | None = None,
    accelerator: Accelerator | None = None,
    resume: bool | str | Path = False,
) -> TrainResult:
    """Train ``model`` on ``train_dataset`` (rows with ``input_ids``/``labels``/``length``).

    The best model (by ``validate_fn(...)[cfg.metric_for_best]``, higher is better) is saved with
    ``save_pretrained`` to ``output_dir/best`` (atomically replaced); without ``validate_fn`` the
    last model is saved there. ``output_dir/train_history.json`` is rewritten after every epoch.
    ``resume``: True continues from the newest intact checkpoint in ``output_dir/checkpoints`` (a
    fresh start when there is none; a checkpoint that fails to load is skipped for the one before it,
    with a warning), a path continues from that checkpoint. A resume refuses a config that changes
    the optimisation (:data:`RUN_DEFINING`) unless ``cfg.allow_config_change_on_resume``, and checks
    that the RNG states came back. The run holds a lock on ``output_dir`` (:class:`RunLock`) while it
    trains; a fresh start deletes only the checkpoints genrec wrote there.
    """
    output_dir = Path(output_dir)
    accelerator = accelerator or Accelerator(mixed_precision=resolve_mixed_precision(cfg.mixed_precision),
                                             gradient_accumulation_steps=cfg.grad_accum_steps)
    restore_dropout = use_fast_dropout(model) if cfg.fast_dropout else None
    try:
        with RunLock(output_dir, enabled=accelerator.is_main_process):
            return _train(model, train_dataset, collator, cfg, output_dir, validate_fn, accelerator, resume)
    finally:
        if restore_dropout is not None:
            restore_dropout()  # the caller's model comes back with its own dropout modules


def _train(model, train_dataset, collator, cfg: TrainingConfig, output_dir: Path, validate_fn, accelerator: Accelerator,
           resume) -> TrainResult:
    set_seed(cfg.seed)
    n_proc = accelerator.num_processes

    # One seeded sampler for every run: the batch order of an epoch is a function of (seed, epoch),
    # which is what makes a run resumable. length_bucketing=False is the same sampler with
    # mega-batches of one batch, i.e. plain shuffled batches.
    sampler = LengthBucketBatchSampler(train_dataset["length"], cfg.batch_size, seed=cfg.seed,
                                       bucket_factor=cfg.bucket_factor if cfg.length_bucketing else 1)
    if cfg.resident_batches:
        resident = ResidentBatches(train_dataset, collator, accelerator.device, cfg.pad_to_multiple_of)
        loader = DataLoader(resident, batch_sampler=sampler, collate_fn=resident.collate)
    else:
        loader = DataLoader(train_dataset, batch_sampler=sampler, collate_fn=collator, num_workers=cfg.num_workers)

    # On a GPU the small models here are bound by kernel launches, not arithmetic: the fused AdamW updates every
    # parameter in a few kernels instead of a dozen per parameter group (on CPU it is not faster: the default stays).
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate,
                                  weight_decay=cfg.weight_decay, fused=accelerator.device.type == "cuda" or None)
    steps_per_epoch = math.ceil(len(loader) / max(1, n_proc) / cfg.grad_accum_steps)
    total_steps = cfg.max_steps or steps_per_epoch * cfg.epochs
    warmup = min(cfg.warmup_steps, total_steps // 2)
    scheduler = _lr_schedule(optimizer, cfg.lr_scheduler, warmup, total_steps, n_proc, cfg.decay_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    # Only the training forward is compiled: validation decodes with the plain module (its shapes vary per
    # step of the search), and saving never sees a compiled wrapper. Both share the same parameters.
    forward = torch.compile(model, backend=cfg.compile_backend, mode=cfg.compile_mode) if cfg.compile else model

    ckpt_root = output_dir / "checkpoints"
    if not resume and ckpt_root.exists():
        # A fresh run must not leave an earlier run's (possibly newer) checkpoints for a later --resume.
        if accelerator.is_main_process:
            logger.warning("fresh start: removing the earlier run's checkpoints in %s (resume=True continues a run)", ckpt_root)
            kept = remove_checkpoints(ckpt_root)
            if kept:
                logger.warning("%s: kept %d file(s) genrec did not write there: %s", ckpt_root, len(kept), [p.name for p in kept[:5]])
        accelerator.wait_for_everyone()
    pos = _Position(num_processes=n_proc)
    resumed_from = None
    pending_rng = None
    if resume:
        candidates = [Path(resume)] if not isinstance(resume, bool) else list_checkpoints(ckpt_root)[::-1]
        if not candidates:
            logger.info("--resume: no checkpoint in %s, starting from scratch", ckpt_root)
        for candidate in candidates:
            try:
                pos = _load_checkpoint(accelerator, candidate, n_proc, cfg, total_steps, steps_per_epoch)
            except ResumeError:
                raise
            except Exception as error:  # a damaged checkpoint (truncated file, bad JSON): try the one before it
                if candidate == candidates[-1]:
                    raise
                logger.warning("%s cannot be loaded (%s: %s); trying the previous checkpoint", candidate, type(error).__name__, error)
                continue
            resumed_from = candidate
            break
        if resumed_from is not None:
            # Mid-epoch, the interrupted run had drawn the loader's seed before this checkpoint: the rebuilt
            # loader draws it again, so the RNG states are put back after that, before the first batch.
            pending_rng = _get_rng_state() if pos.batches_done else None
            logger.info("resumed from %s: epoch %d, batch %d, step %d", resumed_from, pos.epoch, pos.batches_done, pos.steps)
            if resumed_from.resolve().parent != ckpt_root.resolve():
                # A branch: another run's checkpoint continued in this output_dir (e.g. a learning-rate decay
                # from a constant run). It keeps the parent's curve up to here; "best" is chosen among its own
                # validations, so best/ always holds this branch's weights.
                logger.info("branching from %s into %s: best model chosen among this run's validations", resumed_from,
                            output_dir)
                pos.best_metric = pos.best_epoch = pos.best_step = None
                pos.validations_since_best, pos.early_stopped, pos.stopped = 0, False, False

    best_dir = output_dir / "best"
    result = TrainResult(best_metric=pos.best_metric, best_epoch=pos.best_epoch, best_dir=best_dir if best_dir.exists() and
                         pos.best_epoch is not None else None, steps=pos.steps, train_seconds=pos.train_seconds,
                         history=pos.history, resumed_from=resumed_from, best_step=pos.best_step,
                         examples_seen=pos.examples_seen, learning_curve=pos.learning_curve, early_stopped=pos.early_stopped)
    since_best = pos.validations_since_best
    start = time.perf_counter() - pos.train_seconds
    # CPU time (process_time: every thread of this process) counts compute even when other jobs share the
    # cores, so learning curves of runs on a busy machine stay comparable; validation is left out.
    cpu = {"start": time.process_time() - pos.cpu_seconds}
    last_checkpoint = time.perf_counter()
    cpu_monitor = CpuShareMonitor(torch.get_num_threads()) if accelerator.device.type == "cpu" else None
    pace = {"steps": result.steps, "at": time.perf_counter(), "reported": False}

    def elapsed() -> float:
        return time.perf_counter() - start

    def out_of_budget() -> bool:
        over = bool((cfg.max_steps and result.steps >= cfg.max_steps)
                    or (cfg.max_train_minutes and elapsed() / 60 >= cfg.max_train_minutes))
        return _agree(accelerator, over)  # every process must stop at the same step

    def save(epoch: int, batches_done: int, stats: tuple, stopped: bool = False) -> None:
        state = _Position(epoch, batches_done, result.steps, elapsed(), result.best_metric, result.best_epoch, result.history,
                          *stats, stopped=stopped, num_processes=n_proc, best_step=result.best_step,
                          examples_seen=result.examples_seen, learning_curve=result.learning_curve,
                          validations_since_best=since_best, early_stopped=result.early_stopped,
                          cpu_seconds=time.process_time() - cpu["start"])
        _save_checkpoint(accelerator, ckpt_root, state, cfg)

    def validate(epoch: int, train_loss: float) -> dict[str, float] | None:
        """Validate now (once per step count), keep the best model, extend the learning curve; the metrics."""
        nonlocal since_best
        if result.learning_curve and result.learning_curve[-1]["step"] == result.steps:
            return None  # validated at this very step already (an epoch ending on an eval_every_steps step)
        cpu_seconds = time.process_time() - cpu["start"]
        with _full_precision(accelerator, model) as plain_model:
            metrics = validate_fn(plain_model, accelerator)
        cpu["start"] = time.process_time() - cpu_seconds  # validation's CPU time is not training compute
        model.train()  # validate_fn switches to eval mode; validation may come in the middle of an epoch
        if cfg.metric_for_best not in metrics:
            raise KeyError(f"validate_fn returned {sorted(metrics)}, which lacks metric_for_best='{cfg.metric_for_best}'")
        value = float(metrics[cfg.metric_for_best])
        if result.best_metric is None or value > result.best_metric:
            result.best_metric, result.best_epoch, result.best_step = value, epoch, result.steps
            since_best = 0
            _save_model(accelerator, model, best_dir)
            result.best_dir = best_dir
        else:
            since_best += 1
        result.learning_curve.append({"step": result.steps, "epoch": epoch, "examples_seen": result.examples_seen,
                                      "train_seconds": round(elapsed(), 3), "cpu_seconds": round(cpu_seconds, 3),
                                      "train_loss": train_loss,
                                      "learning_rate": scheduler.get_last_lr()[0],
                                      **{k: float(v) for k, v in metrics.items()}})
        if accelerator.is_main_process:
            _write_learning_curve(output_dir / LEARNING_CURVE, result.learning_curve)
        logger.info("step %d (epoch %d): %s", result.steps, epoch, metrics)
        if cfg.early_stopping_patience and since_best >= cfg.early_stopping_patience:
            result.early_stopped = True
            logger.info("early stopping at step %d: %s has not improved on %.5f (step %d) for %d validations",
                        result.steps, cfg.metric_for_best, result.best_metric, result.best_step, since_best)
        return metrics

    stopped = pos.stopped or pos.epoch >= cfg.epochs
    for epoch in range(pos.epoch, cfg.epochs if not stopped else pos.epoch):
        sampler.set_epoch(epoch)
        loader.set_epoch(epoch)  # also the prepared loader's own counter, which it pushes to the sampler
        skip = pos.batches_done if epoch == pos.epoch else 0
        epoch_loader = accelerator.skip_first_batches(loader, skip) if skip else loader
        if epoch == pos.epoch:
            loss_sum, loss_count, examples, seconds_before = pos.epoch_loss_sum, pos.epoch_loss_count, pos.epoch_examples, pos.epoch_seconds
        else:
            loss_sum, loss_count, examples, seconds_before = 0.0, 0, 0, 0.0
        # The training loss is summed on the device and read (loss_sum += _drain(pending_loss)) only where it is
        # used: a .item() per step would make the host wait for the accelerator every step, serialising the
        # host's kernel launches with the device's work.
        pending_loss = torch.zeros((), dtype=torch.float32, device=accelerator.device)
        batches_done = skip
        model.train()
        epoch_start = time.perf_counter()
        budget_hit = due_at_epoch_end = False
        bar = tqdm(epoch_loader, desc=f"epoch {epoch}", disable=not accelerator.is_local_main_process, dynamic_ncols=True,
                   initial=skip, total=len(loader))
        for batch in bar:
            if pending_rng is not None:
                _set_rng_state(pending_rng)
                pending_rng = None
            with accelerator.accumulate(model):
                out = forward(**{k: batch[k] for k in MODEL_INPUTS if k in batch})
                accelerator.backward(out.loss)
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            pending_loss += out.loss.detach().float()
            loss_count += 1
            examples += batch["input_ids"].shape[0]
            result.examples_seen += batch["input_ids"].shape[0] * n_proc
            batches_done += 1
            if not accelerator.sync_gradients:
                continue
            result.steps += 1
            if result.steps % cfg.log_every_steps == 0:
                loss_sum += _drain(pending_loss)
                bar.set_postfix(loss=f"{loss_sum / loss_count:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if cpu_monitor is not None:
                cpu_monitor.update()
            if not pace["reported"] and result.steps - pace["steps"] >= 20:
                pace["reported"] = True  # the first 20 steps include warm-up costs: a slight overestimate
                per_step = (time.perf_counter() - pace["at"]) / (result.steps - pace["steps"])
                logger.info("%.2f s per optimizer step: the %d steps left take about %.0f min (validation not counted)",
                            per_step, max(0, total_steps - result.steps), per_step * max(0, total_steps - result.steps) / 60)
            budget_hit = out_of_budget()
            if budget_hit:
                break
            due = bool(cfg.checkpoint_every_steps and result.steps % cfg.checkpoint_every_steps == 0)
            if (validate_fn is not None and cfg.eval_every_steps and result.steps % cfg.eval_every_steps == 0
                    and batches_done < len(loader)):  # an epoch's last step validates below, after the epoch
                loss_sum += _drain(pending_loss)
                validate(epoch, loss_sum / max(1, loss_count))
                if result.early_stopped:
                    break
                due = due or bool(cfg.checkpoint_every_steps or cfg.checkpoint_every_minutes)  # keep the validation
            if cfg.checkpoint_every_minutes:
                due = due or _agree(accelerator, time.perf_counter() - last_checkpoint >= 60 * cfg.checkpoint_every_minutes)
            if due and batches_done < len(loader):
                loss_sum += _drain(pending_loss)
                save(epoch, batches_done, (loss_sum, loss_count, examples, seconds_before + time.perf_counter() - epoch_start))
                last_checkpoint = time.perf_counter()
            elif due:  # the epoch's last batch: saved after validation, as an epoch-end checkpoint
                due_at_epoch_end = True
        if pending_rng is not None:  # resumed at the very end of an epoch: no batch was left
            _set_rng_state(pending_rng)
            pending_rng = None
        epoch_seconds = seconds_before + time.perf_counter() - epoch_start
        loss_sum += _drain(pending_loss)
        record = {
            "epoch": epoch,
            "steps": result.steps,
            "train_loss": loss_sum / max(1, loss_count),
            "epoch_seconds": epoch_seconds,
            "examples_per_second": examples * n_proc / max(epoch_seconds, 1e-9),
        }
        budget_hit = budget_hit or result.early_stopped
        is_last = budget_hit or epoch == cfg.epochs - 1
        step_due = bool(cfg.eval_every_steps and result.steps % cfg.eval_every_steps == 0)
        if validate_fn is not None and not result.early_stopped and ((epoch + 1) % cfg.eval_every_epochs == 0 or is_last or step_due):
            metrics = validate(epoch, record["train_loss"])
            if metrics is not None:
                record["validation"] = metrics
            budget_hit = budget_hit or result.early_stopped
        elif validate_fn is None:
            _save_model(accelerator, model, best_dir)
            result.best_dir, result.best_epoch, result.best_step = best_dir, epoch, result.steps
        result.history.append(record)
        result.train_seconds = elapsed()
        if accelerator.is_main_process:
            atomic_write_json(output_dir / "train_history.json", {"config": asdict(cfg), "best_epoch": result.best_epoch,
                                                                  "best_step": result.best_step, "best_metric": result.best_metric,
                                                                  "early_stopped": result.early_stopped, "epochs": result.history})
        checkpointing = cfg.checkpoint_at_epoch_end or cfg.checkpoint_every_steps or cfg.checkpoint_every_minutes
        if cfg.checkpoint_at_epoch_end or due_at_epoch_end or (checkpointing and (is_last or budget_hit)):
            save(epoch + 1, 0, (0.0, 0, 0, 0.0), stopped=budget_hit)
            last_checkpoint = time.perf_counter()
        if budget_hit:
            why = "no improvement (early stopping)" if result.early_stopped else "budget reached"
            logger.info("stopping after %d steps (%.1f min): %s", result.steps, elapsed() / 60, why)
            if not result.early_stopped and result.steps < warmup:
                logger.warning("the budget ended during the learning-rate warmup (step %d of %d warmup steps): the model is "
                               "barely trained; give a step budget (training.max_steps) rather than a wall-clock one, or "
                               "fewer warmup steps", result.steps, warmup)
            break
    result.cpu_seconds = time.process_time() - cpu["start"]
    # The caller's model comes back as it went in: without Accelerate's autocast wrapper on its forward,
    # so that using it after training (in fp32) gives what a reload of the saved weights gives.
    accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    accelerator.wait_for_everyone()
    return result


def _lr_schedule(optimizer, name: str, warmup: int, total_steps: int, num_processes: int, decay_steps: int | None = None):
    """Linear warmup over ``warmup`` optimizer steps, then ``name``.

    Accelerate steps a prepared scheduler num_processes times per optimizer step (its schedules
    count single-process steps), so the schedule is laid out in those units.
    """
    if name == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup * num_processes)
    if name == "inverse_sqrt":
        # lr * 1/sqrt(step / warmup) after warmup (T5's and TIGER's schedule), continuous at the end of warmup.
        return get_inverse_sqrt_schedule(optimizer, warmup * num_processes, timescale=max(1, warmup * num_processes))
    if name == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, warmup * num_processes, total_steps * num_processes)
    if name == "wsd":
        decay = min(decay_steps, total_steps - warmup)
        return get_wsd_schedule(optimizer, warmup * num_processes, decay * num_processes,
                                num_stable_steps=(total_steps - warmup - decay) * num_processes, decay_type="cosine")
    raise ValueError(f"training.lr_scheduler must be one of {LR_SCHEDULERS}, got {name!r}")


# The learning curve's leading columns; the metrics follow by cutoff, Recall before NDCG (recall@5, ndcg@5, recall@10, ...).
# A fixed order, not the rows' key order: rows restored from a checkpoint come back with sorted keys.
LEARNING_CURVE_COLUMNS = ("step", "epoch", "examples_seen", "train_seconds", "cpu_seconds", "train_loss", "learning_rate")


def _curve_column_order(name: str) -> tuple:
    if name in LEARNING_CURVE_COLUMNS:
        return (0, LEARNING_CURVE_COLUMNS.index(name))
    metric, _, cutoff = name.partition("@")
    if cutoff.isdigit():
        return (1, int(cutoff), metric != "recall", metric)
    return (2, name)


def _write_learning_curve(path: Path, rows: list[dict]) -> None:
    """``rows`` as CSV (columns: the union of the rows' keys, in :func:`_curve_column_order`), written atomically."""
    columns = sorted({k for row in rows for k in row}, key=_curve_column_order)
    lines = [",".join(columns)]
    lines += [",".join("" if row.get(c) is None else f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c])
                       for c in columns) for row in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


# ---------------------------------------------------------------------- helpers


def _drain(pending: torch.Tensor) -> float:
    """What ``pending`` (a 0-d tensor on the device) has summed since the last read, as a float; it restarts at 0."""
    value = float(pending.item())
    pending.zero_()
    return value


def _agree(accelerator: Accelerator, flag: bool) -> bool:
    """The main process's ``flag`` on every process (wall-clock decisions differ between processes)."""
    if accelerator.num_processes == 1:
        return flag
    value = torch.tensor([1 if flag else 0], device=accelerator.device)
    return bool(broadcast(value, from_process=0).item())


def _get_rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_checkpoint(accelerator: Accelerator, root: Path, state: _Position, cfg: TrainingConfig) -> None:
    """``save_state`` + trainer state into ``.step-N.tmp``, then published by rename (see the module docstring)."""
    final = checkpoint_dir(root, state.steps)
    # A unique temporary folder, named by the main process and shared with the others.
    name = [new_tmp_dir(final).name if accelerator.is_main_process else None]
    if accelerator.num_processes > 1:
        broadcast_object_list(name, from_process=0)
    tmp = root / name[0]
    fingerprint = rng_fingerprint()  # the main process's RNG states as save_state records them
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))  # model, optimizer, scheduler, step counter, this process's RNG states
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_json(tmp / TRAINER_STATE, {**asdict(state), "config": asdict(cfg), "rng_fingerprint": fingerprint})
        publish_checkpoint(tmp, final, cfg.keep_checkpoints)
    accelerator.wait_for_everyone()


def _schedule_factors(cfg_values: dict, total_steps: int, steps: int) -> list[float]:
    """The learning-rate factor of optimizer steps 0..``steps`` under ``cfg_values``' schedule settings."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    warmup = min(cfg_values["warmup_steps"], total_steps // 2)
    schedule = _lr_schedule(optimizer, cfg_values["lr_scheduler"], warmup, total_steps, 1, cfg_values.get("decay_steps"))
    return [schedule.lr_lambdas[0](step) for step in range(steps + 1)]


def _load_checkpoint(accelerator: Accelerator, path: Path, num_processes: int, cfg: TrainingConfig,
                     total_steps: int, steps_per_epoch: int) -> _Position:
    path = Path(path)
    if not (path / TRAINER_STATE).is_file():
        raise FileNotFoundError(f"{path} is not a complete training checkpoint (no {TRAINER_STATE})")
    if not CHECKPOINT_NAME.fullmatch(path.name):
        raise FileNotFoundError(f"{path}: a checkpoint folder is named step-<8 digits> (step-00006000), as genrec saves it; "
                                "a renamed copy would not be found by a later --resume")
    saved = json.loads((path / TRAINER_STATE).read_text())
    saved_cfg = saved.pop("config", None) or {}
    fingerprint = saved.pop("rng_fingerprint", None)
    # A setting newer than the checkpoint is absent from its config: it had the default (which keeps the older behaviour).
    defaults = {f.name: f.default for f in fields(TrainingConfig)}
    changed = {k: (saved_cfg.get(k, defaults[k]), getattr(cfg, k)) for k in RUN_DEFINING
               if saved_cfg.get(k, defaults[k]) != getattr(cfg, k)}
    if changed and set(changed) <= set(SCHEDULE_SETTINGS):
        before = {k: saved_cfg.get(k) for k in SCHEDULE_SETTINGS}
        now = {k: getattr(cfg, k) for k in SCHEDULE_SETTINGS}
        steps_done = int(saved.get("steps", 0))
        # Each schedule over its own run's length: a budget cut with an earlier decay agrees while both were constant.
        saved_total = saved_cfg.get("max_steps") or steps_per_epoch * int(saved_cfg.get("epochs", cfg.epochs))
        if _schedule_factors(before, saved_total, steps_done) == _schedule_factors(now, total_steps, steps_done):
            logger.info("%s: schedule %s -> %s agrees on the %d steps taken: resuming into it", path, before, now, steps_done)
            changed = {}
    if changed and not cfg.allow_config_change_on_resume:
        listed = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise ResumeError(f"{path}: resuming with settings that change the run ({listed}); resume with the checkpoint's "
                          "settings, start a fresh run, or set training.allow_config_change_on_resume=true")
    if changed:
        logger.warning("%s: resuming with changed settings %s (allow_config_change_on_resume)", path, changed)
    known = {f.name for f in fields(_Position)}
    pos = _Position(**{k: v for k, v in saved.items() if k in known})
    if pos.num_processes != num_processes:
        raise ResumeError(f"{path} was written by {pos.num_processes} process(es); resume with the same number "
                          f"(now {num_processes}): the data position and RNG states are per process")
    accelerator.load_state(str(path))
    if fingerprint is not None and accelerator.is_main_process and rng_fingerprint() != fingerprint:
        raise RuntimeError(f"{path}: the random number generator states were not restored (is random_states_0.pkl damaged?); "
                           "the resumed run would not reproduce the uninterrupted one")
    return pos


@contextlib.contextmanager
def _full_precision(accelerator: Accelerator, model: torch.nn.Module):
    """The unwrapped model without Accelerate's autocast wrapper, restored afterwards.

    Validation metrics must not depend on the training precision. ``unwrap_model(...,
    keep_fp32_wrapper=False)`` removes the wrapper *in place*, so training would silently continue
    in fp32 unless the wrapped ``forward`` is put back.
    """
    inner = accelerator.unwrap_model(model)
    wrapped_forward = inner.__dict__.get("forward")
    original = inner.__dict__.get("_original_forward")
    plain = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    try:
        yield plain
    finally:
        if wrapped_forward is not None:
            inner.forward = wrapped_forward
        if original is not None:
            inner._original_forward = original


def _save_model(accelerator: Accelerator, model: torch.nn.Module, final_dir: Path) -> None:
    """``save_pretrained`` into a temporary folder, then swapped in. Under FSDP / DeepSpeed the full
    state dict is gathered first (a collective: every process takes part)."""
    accelerator.wait_for_everyone()
    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    state_dict = accelerator.get_state_dict(model) if sharded else None
    if accelerator.is_main_process:
        tmp = new_tmp_dir(final_dir)
        accelerator.unwrap_model(model).save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        replace_dir(tmp, final_dir)
    accelerator.wait_for_everyone()
