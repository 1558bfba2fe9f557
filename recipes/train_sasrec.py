"""Train SASRec on item IDs (the non-generative reference) on the same split as the generative recipes.

    python recipes/train_sasrec.py --config recipes/configs/sasrec.yaml dataset=ml_100k output_dir=runs/ml100k/sasrec
    python recipes/train_sasrec.py --config recipes/configs/sasrec.yaml cold_item_fraction=0.1   # cold-start protocol
    python recipes/train_sasrec.py --config recipes/configs/sasrec_beauty_full.yaml --resume     # to convergence; continues

Same data as ``train_genrec.py``: the leave-one-out split (docs/method.md section 8; with the cold-start
protocol when ``cold_item_fraction`` > 0), training on every training target with at most
``max_history`` items of context, validation NDCG@10 over the full catalogue picks the best epoch,
then the test split is ranked over the full catalogue (no items are excluded, as for the generative
models). Model: :mod:`genrec.models.sasrec` (GPT-2 blocks, full-softmax cross-entropy). Writes
``<output_dir>/metrics.json`` (``validation``, ``test``, and ``test_cold`` / ``test_warm`` under
the cold-start protocol), ``per_user_test.json`` (the format of ``evaluate_genrec.py --per-user``,
for paired tests) and the best model (``best/``).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from datasets import Dataset
from transformers import GPT2LMHeadModel

from genrec.config import add_data_dir_argument, data_dir_overrides, load_config
from genrec.data import CausalCollator, SplitSettings, load_dataset
from genrec.data.split import cold_item_mask, leave_one_out_split
from genrec.eval.evaluate import evaluate_ranker
from genrec.eval.per_user import write_per_user
from genrec.models.sasrec import (
    PAD_TOKEN,
    SASRecConfig,
    build_sasrec,
    rank_items,
    sasrec_eval_rows,
    sasrec_training_rows,
)
from genrec.training import TrainingConfig, atomic_write_json, resolve_mixed_precision, train

logger = logging.getLogger("train_sasrec")


@dataclass
class SASRecEvalConfig:
    batch_size: int = 512
    ks: list[int] = field(default_factory=lambda: [5, 10])
    valid_max_users: int | None = None


@dataclass
class SASRecRunConfig(SplitSettings):
    """The split settings (:class:`SplitSettings`, inherited) plus data, model, training and evaluation."""

    dataset: str = "amazon_beauty"
    data_dir: str | None = None  # None -> $GENREC_DATA_DIR
    output_dir: str = "runs/beauty/sasrec"
    model: SASRecConfig = field(default_factory=SASRecConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    eval: SASRecEvalConfig = field(default_factory=SASRecEvalConfig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (recipes/configs/sasrec.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. training.epochs=50 model.hidden_size=128")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in output_dir")
    add_data_dir_argument(parser)
    args = parser.parse_intermixed_args(argv)
    cfg = load_config(SASRecRunConfig, args.config, data_dir_overrides(args))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    accelerator = Accelerator(mixed_precision=resolve_mixed_precision(cfg.training.mixed_precision))
    out = Path(cfg.output_dir)
    if cfg.model.max_positions < cfg.max_history + 1:
        raise ValueError(f"model.max_positions={cfg.model.max_positions} must be >= max_history + 1 = {cfg.max_history + 1}")

    dataset = load_dataset(cfg.dataset, cfg.data_dir)
    cold = cold_item_mask(len(dataset.item_ids), cfg.cold_item_fraction, cfg.cold_item_seed)
    split = leave_one_out_split(dataset, max_history=cfg.max_history, cold_items=cold)
    train_rows = Dataset.from_list(sasrec_training_rows(split.train_sequences, cfg.max_history))
    valid_rows, test_rows = sasrec_eval_rows(split.valid), sasrec_eval_rows(split.test)
    collator = CausalCollator(pad_id=PAD_TOKEN)
    set_seed(cfg.training.seed)
    model = build_sasrec(len(split.item_ids), cfg.model)
    logger.info("%s: %d items, %d training windows (%d targets), %d valid / %d test users; SASRec %.2fM parameters",
                cfg.dataset, len(split.item_ids), len(train_rows), len(split.train), len(valid_rows), len(test_rows),
                sum(p.numel() for p in model.parameters()) / 1e6)

    def evaluate(model, rows, max_users, desc):
        model.eval()
        device = next(model.parameters()).device

        def rank(batch):
            return rank_items(model, batch["input_ids"].to(device), batch["attention_mask"].to(device), max(cfg.eval.ks))
        return evaluate_ranker(rank, rows, collator, ks=tuple(cfg.eval.ks), batch_size=cfg.eval.batch_size, max_users=max_users, desc=desc)

    def validate(model, acc):
        was_training = model.training
        metrics = evaluate(model, valid_rows, cfg.eval.valid_max_users, "validate").metrics
        model.train(was_training)
        return metrics

    result = train(model, train_rows, collator, cfg.training, out, validate_fn=validate, accelerator=accelerator,
                   resume=args.resume)
    best = GPT2LMHeadModel.from_pretrained(result.best_dir).to(accelerator.device)
    final, timings = {}, {"train_seconds": result.train_seconds}
    for name, rows in (("validation", valid_rows), ("test", test_rows)):
        res = evaluate(best, rows, None, name)
        final[name] = res.metrics
        timings[f"{name}_eval_seconds"], timings[f"{name}_users"] = res.seconds, res.num_users
        logger.info("%s: %s (%d users)", name, {k: round(v, 4) for k, v in res.metrics.items()}, res.num_users)
    cold_by_user = split.cold_test_users()
    if cold_by_user is not None:
        final["test_cold"], final["test_warm"] = res.subset_metrics(cold_by_user), res.subset_metrics(~cold_by_user)
        logger.info("test, cold targets: %s", {k: round(v, 4) for k, v in final["test_cold"].items()})
    if accelerator.is_main_process:
        write_per_user(out / "per_user_test.json", res, "test", split.user_ids, cold_by_user)
        atomic_write_json(out / "config.json", asdict(cfg))
        atomic_write_json(out / "metrics.json", {**final, "model_type": "sasrec", "best_epoch": result.best_epoch, "best_step": result.best_step,
                                                 "steps": result.steps, "examples_seen": result.examples_seen,
                                                 "early_stopped": result.early_stopped,
                                                 "timings": timings, "cold_items": int(cold.sum()) if cold is not None else 0,
                                                 "cold_valid_dropped": split.cold_valid_dropped,
                                                 "device": str(accelerator.device), "threads": torch.get_num_threads()})
    accelerator.end_training()
    return final


if __name__ == "__main__":
    main()
