"""The Accelerate training loop for SID recommenders (seq2seq or decoder-only).

One function, readable top to bottom: build the data loader (length-bucketed by default), AdamW +
warmup/cosine schedule, train for ``epochs`` (or until ``max_steps`` / ``max_train_minutes``),
validate with the *caller's* ``validate_fn`` (genrec never imports genrec.eval: the recipe passes
the evaluation in), keep the best checkpoint by ``metric_for_best``, and write a history JSON.
Works under ``python`` and ``accelerate launch`` alike.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from genrec.training.checkpoint import atomic_write_json, new_tmp_dir, replace_dir
from genrec.training.sampler import LengthBucketBatchSampler

logger = logging.getLogger(__name__)

ValidateFn = Callable[[torch.nn.Module, Accelerator], dict[str, float]]


@dataclass
class TrainingConfig:
    """Optimisation budget. ``batch_size`` is per process; effective = batch_size * processes * grad_accum_steps."""

    epochs: int = 10
    max_steps: int | None = None
    max_train_minutes: float | None = None  # stop (and still evaluate) after this wall time
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.035
    warmup_steps: int = 500
    max_grad_norm: float = 1.0
    grad_accum_steps: int = 1
    mixed_precision: str = "no"  # "no" | "bf16" | "fp16" (autocast; see Accelerate)
    length_bucketing: bool = True
    bucket_factor: int = 50
    eval_every_epochs: int = 1
    metric_for_best: str = "ndcg@10"
    log_every_steps: int = 50
    num_workers: int = 0
    seed: int = 42


@dataclass
class TrainResult:
    best_metric: float | None
    best_epoch: int | None
    best_dir: Path | None
    steps: int
    train_seconds: float
    history: list[dict] = field(default_factory=list)


def train(
    model: torch.nn.Module,
    train_dataset,
    collator: Callable,
    cfg: TrainingConfig,
    output_dir: str | Path,
    validate_fn: ValidateFn | None = None,
    accelerator: Accelerator | None = None,
) -> TrainResult:
    """Train ``model`` on ``train_dataset`` (rows with ``input_ids``/``labels``/``length``).

    The best model (by ``validate_fn(...)[cfg.metric_for_best]``, higher is better) is saved with
    ``save_pretrained`` to ``output_dir/best`` (atomically replaced); without ``validate_fn`` the
    last model is saved there. ``output_dir/train_history.json`` is rewritten after every epoch.
    """
    output_dir = Path(output_dir)
    accelerator = accelerator or Accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum_steps)
    set_seed(cfg.seed)

    if cfg.length_bucketing:
        sampler = LengthBucketBatchSampler(train_dataset["length"], cfg.batch_size, seed=cfg.seed, bucket_factor=cfg.bucket_factor)
        loader = DataLoader(train_dataset, batch_sampler=sampler, collate_fn=collator, num_workers=cfg.num_workers)
    else:
        sampler = None
        generator = torch.Generator().manual_seed(cfg.seed)
        loader = DataLoader(train_dataset, batch_size=cfg.batch_size, shuffle=True, generator=generator, collate_fn=collator, num_workers=cfg.num_workers)

    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(loader) / max(1, accelerator.num_processes) / cfg.grad_accum_steps)
    total_steps = cfg.max_steps or steps_per_epoch * cfg.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, min(cfg.warmup_steps, total_steps // 2), total_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    best_dir = output_dir / "best"
    result = TrainResult(best_metric=None, best_epoch=None, best_dir=None, steps=0, train_seconds=0.0)
    start = time.perf_counter()
    out_of_budget = False
    for epoch in range(cfg.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        elif hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        model.train()
        epoch_start, loss_sum, loss_count, examples = time.perf_counter(), 0.0, 0, 0
        bar = tqdm(loader, desc=f"epoch {epoch}", disable=not accelerator.is_local_main_process, dynamic_ncols=True)
        for batch in bar:
            with accelerator.accumulate(model):
                out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
                accelerator.backward(out.loss)
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            loss_sum += out.loss.detach().float().item()
            loss_count += 1
            examples += batch["input_ids"].shape[0]
            if accelerator.sync_gradients:
                result.steps += 1
                if result.steps % cfg.log_every_steps == 0:
                    bar.set_postfix(loss=f"{loss_sum / loss_count:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            minutes = (time.perf_counter() - start) / 60
            if (cfg.max_steps and result.steps >= cfg.max_steps) or (cfg.max_train_minutes and minutes >= cfg.max_train_minutes):
                out_of_budget = True
                break
        epoch_seconds = time.perf_counter() - epoch_start
        record = {
            "epoch": epoch,
            "steps": result.steps,
            "train_loss": loss_sum / max(1, loss_count),
            "epoch_seconds": epoch_seconds,
            "examples_per_second": examples * accelerator.num_processes / max(epoch_seconds, 1e-9),
        }
        is_last = out_of_budget or epoch == cfg.epochs - 1
        if validate_fn is not None and ((epoch + 1) % cfg.eval_every_epochs == 0 or is_last):
            with _full_precision(accelerator, model) as plain_model:
                metrics = validate_fn(plain_model, accelerator)
            record["validation"] = metrics
            if cfg.metric_for_best not in metrics:
                raise KeyError(f"validate_fn returned {sorted(metrics)}, which lacks metric_for_best='{cfg.metric_for_best}'")
            value = float(metrics[cfg.metric_for_best])
            if result.best_metric is None or value > result.best_metric:
                result.best_metric, result.best_epoch = value, epoch
                _save_model(accelerator, model, best_dir)
                result.best_dir = best_dir
            logger.info("epoch %d: %s", epoch, metrics)
        elif validate_fn is None:
            _save_model(accelerator, model, best_dir)
            result.best_dir, result.best_epoch = best_dir, epoch
        result.history.append(record)
        result.train_seconds = time.perf_counter() - start
        if accelerator.is_main_process:
            atomic_write_json(output_dir / "train_history.json", {"config": asdict(cfg), "best_epoch": result.best_epoch,
                                                                  "best_metric": result.best_metric, "epochs": result.history})
        if out_of_budget:
            logger.info("stopping after %d steps (%.1f min): budget reached", result.steps, (time.perf_counter() - start) / 60)
            break
    accelerator.wait_for_everyone()
    return result


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
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        tmp = new_tmp_dir(final_dir)
        accelerator.unwrap_model(model).save_pretrained(tmp, safe_serialization=True)
        replace_dir(tmp, final_dir)
    accelerator.wait_for_everyone()
