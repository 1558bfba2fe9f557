"""Train a generative recommender on Semantic IDs and evaluate it on the test split.

    python recipes/train_genrec.py --config recipes/configs/genrec_beauty.yaml \\
        tokenizer_dir=runs/beauty/tokenizer output_dir=runs/beauty/genrec training.epochs=5
    python recipes/train_genrec.py --config recipes/configs/genrec_beauty_causal.yaml   # decoder-only
    python recipes/train_genrec.py --config recipes/configs/genrec_beauty_lora.yaml model.lora.pretrained=PATH
    python recipes/train_genrec.py --config ... --resume       # continue a killed run from its last checkpoint
    python recipes/train_genrec.py --config ... --branch-from RUN/checkpoints/step-00006000 output_dir=NEW \
        training.lr_scheduler=wsd training.decay_steps=2000 training.max_steps=8000   # decay a constant run's LR
    python recipes/train_genrec.py --config ... --init-from OTHER_RUN/best output_dir=NEW   # start from its weights
    accelerate launch --num_processes 2 recipes/train_genrec.py --config ...   # data-parallel (GPUs)
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 recipes/train_genrec.py --config ...  # CPU processes

``model.type`` picks the recommender: ``t5`` (TIGER's encoder-decoder; the T5 fields of ``model``;
``model.encoder=causal model.train_targets=every_item`` trains every item of a history window as a
target in one pass, see ``genrec.models.t5.CausalEncoderT5``; ``model.encoder=item_pooled`` runs the encoder on one
position per history item, ~2.5x cheaper training steps on CPU, see ``genrec.models.t5.ItemPooledT5``),
``causal`` (a Llama/Qwen2-style decoder-only model from ``model.causal``; ``model.causal.train_targets=
every_item`` trains on every item of a history window instead of the last only) or ``lora`` (a local
pretrained Hugging Face LM + LoRA from ``model.lora``: SID tokens added to its text tokenizer, the
new embedding rows trained, item titles mixed into the history). All three share the data split,
the SID table, the training loop and trie-constrained beam search.

Steps: load the dataset and its leave-one-out split (docs/method.md section 8), load the item -> SID
table written by ``recipes/train_tokenizer.py``, turn histories into token sequences, build the
model, train it with the Accelerate loop (validation NDCG@10 picks the best epoch; resumable
checkpoints under ``checkpoints/``), then evaluate the best model on the full validation and test
sets. Writes ``<output_dir>/metrics.json`` with ``validation`` and ``test`` metrics, the model
(``best/``), ``token_space.json`` (where the SID tokens are), ``vocab.json`` (t5/causal) or
``text_tokenizer/`` (lora), ``per_user_test.json`` (every test user's metrics, the format of
``evaluate_genrec.py --per-user``) and the resolved config.

Cold-start protocol (``cold_item_fraction`` > 0, with a tokenizer trained under the same setting,
see ``recipes/train_tokenizer.py``): the cold items and their interactions are held out of training
and validation (``genrec.data.split``); ``metrics.json`` then also has ``test_cold`` (test users
whose target is a cold item) and ``test_warm``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from genrec.config import (
    ConfigError,
    ConfigValueError,
    add_data_dir_argument,
    check_positive,
    data_dir_overrides,
    from_dict,
    load_config,
    require,
)
from genrec.data import SplitSettings, load_dataset
from genrec.data.split import SplitData
from genrec.decoding import ColdCatalogue, GenerationSettings, PrefixTrie
from genrec.eval.evaluate import evaluate_generative
from genrec.eval.per_user import write_per_user
from genrec.eval.report import plot_learning_curve
from genrec.eval.sid_diagnostics import ranking_top1_diagnostics
from genrec.inputs import ModelInputs
from genrec.inputs import build_inputs as build_model_inputs
from genrec.models import load_model
from genrec.models.registry import ModelConfig
from genrec.runs import RunManifest, split_for_run, write_manifest
from genrec.tokenizer import SIDTable
from genrec.training import (
    TrainingConfig,
    atomic_write_json,
    choose_num_threads,
    resolve_mixed_precision,
    train,
)
from genrec.training.checkpoint import check_output_dir, list_checkpoints

logger = logging.getLogger("train_genrec")


@dataclass
class EvalConfig(GenerationSettings):
    """How validation and test rank the catalogue: the decoding settings (:class:`GenerationSettings`, inherited:
    num_beams, normalization, batch_size, search, max_width) plus what is scored."""

    ks: list[int] = field(default_factory=lambda: [5, 10])
    valid_max_users: int | None = None  # validation during training on a fixed sample of N users (None = all)
    valid_sample_seed: int | None = 0  # the sample's seed (None = the first N users)
    test_max_users: int | None = None  # debugging only: reported metrics must use all users (None)
    final_validation: bool = True  # re-rank the full validation split with the best model at the end (false: test only)

    def __post_init__(self):
        check_positive(self, "num_beams", "batch_size")
        check_positive(self, "valid_max_users", "test_max_users", allow_none=True)
        require(bool(self.ks) and all(k >= 1 for k in self.ks), f"ks must be a non-empty list of cut-offs >= 1, got {self.ks!r}")
        require(self.num_beams >= max(self.ks), f"num_beams ({self.num_beams}) must be >= the largest of ks ({max(self.ks)}): "
                "beam search returns at most num_beams items")
        require(self.max_width >= self.num_beams, f"max_width ({self.max_width}) must be >= num_beams")
        try:
            super().__post_init__()
        except ValueError as e:  # GenerationSettings' own checks, reported as a config error
            raise ConfigValueError(str(e)) from None


@dataclass
class GenRecConfig(SplitSettings):
    """The recipe's config: the split settings (:class:`SplitSettings`, inherited: max_history, cold_item_fraction,
    cold_item_seed) plus the data, model, training and evaluation sections."""

    dataset: str = "amazon_beauty"
    data_dir: str | None = None  # None -> $GENREC_DATA_DIR
    tokenizer_dir: str = "runs/beauty/tokenizer"
    output_dir: str = "runs/beauty/genrec"
    num_user_tokens: int = 2000  # TIGER's hashed user tokens; 0 disables them
    # False: the last SID level, the dedup code that only tells colliding items apart, carries no training loss (as in
    # phonism/genrec's TIGER); generation still chooses it, among the colliding items, by the model's untrained
    # preference. The collision-free levels then get all of the loss.
    dedup_loss: bool = True
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        super().__post_init__()
        check_positive(self, "num_user_tokens", minimum=0)
        metric, _, k = self.training.metric_for_best.partition("@")
        require(int(k) in self.eval.ks, f"training.metric_for_best={self.training.metric_for_best} needs {k} in eval.ks "
                f"({self.eval.ks}): validation reports only those cut-offs")


def load_split(cfg: GenRecConfig, dataset) -> SplitData:
    """The run's leave-one-out split (cold-start protocol when ``cfg.cold_item_fraction`` > 0; the tokenizer in
    ``cfg.tokenizer_dir`` must have held out exactly the same items: :func:`genrec.runs.split_for_run`)."""
    return split_for_run(cfg, dataset, cfg.tokenizer_dir)


def build_inputs(cfg: GenRecConfig, dataset, split, sid_table: SIDTable, with_model: bool = True) -> ModelInputs:
    """:func:`genrec.inputs.build_inputs` with this recipe's settings (model, user tokens, history cut)."""
    return build_model_inputs(cfg.model, dataset, split, sid_table, num_user_tokens=cfg.num_user_tokens,
                              max_history=cfg.max_history, with_model=with_model, dedup_loss=cfg.dedup_loss)


# What a run is: resuming with another dataset, tokenizer, split or model would continue a different run.
RUN_KEYS = ("dataset", "tokenizer_dir", "max_history", "cold_item_fraction", "cold_item_seed", "num_user_tokens", "dedup_loss",
            "model")


def check_resumable(saved_config: Path, cfg: GenRecConfig) -> None:
    """Refuse ``--resume`` when the run folder's ``config.json`` differs in a :data:`RUN_KEYS` entry
    (``training.allow_config_change_on_resume=true`` accepts it; training settings are checked by the trainer).

    The saved config is read through :class:`GenRecConfig`, so a setting added in a later release (absent
    from an older run's file) takes its default, which by convention keeps the older behaviour, and does
    not count as a change. A file this release cannot parse (a removed setting) is compared as written."""
    if not saved_config.is_file():
        return
    saved = json.loads(saved_config.read_text())
    try:
        saved = asdict(from_dict(GenRecConfig, saved, where=str(saved_config)))
    except (ConfigError, TypeError):
        pass
    config = asdict(cfg)
    changed = [key for key in RUN_KEYS if key in saved and saved[key] != config.get(key)]
    if changed and not config["training"].get("allow_config_change_on_resume"):
        detail = "; ".join(f"{k}: {saved[k]!r} -> {config.get(k)!r}" for k in changed)
        raise ValueError(f"{saved_config}: --resume with a different {', '.join(changed)} ({detail[:300]}); resume with the "
                         "run's settings, use another output_dir, or set training.allow_config_change_on_resume=true")


def fixed_sample(ds, max_users: int | None, seed: int | None):
    """The rows validation scores during training: all, the first ``max_users``, or a seeded random sample of them.

    The sample is drawn once (numpy's own generator: no global RNG state is touched, so resumed runs
    stay bit-identical) and is the same at every validation, so the learning curve compares like with like.
    """
    if max_users is None or max_users >= len(ds):
        return ds
    if seed is None:
        return ds.select(range(max_users))
    return ds.select(sorted(np.random.default_rng(seed).choice(len(ds), size=max_users, replace=False).tolist()))


def load_weights(model: torch.nn.Module, model_dir: Path) -> None:
    """``model``'s weights from the model saved in ``model_dir`` (same architecture and shapes), in place."""
    if (model_dir / "adapter_config.json").is_file():
        raise ValueError(f"--init-from {model_dir}: a LoRA adapter; --init-from takes a full model")
    saved = load_model(model_dir).state_dict()
    own = model.state_dict()
    if saved.keys() != own.keys() or any(saved[k].shape != own[k].shape for k in own):
        differing = sorted(set(saved) ^ set(own)) or [k for k in own if saved[k].shape != own[k].shape]
        raise ValueError(f"--init-from {model_dir}: its model differs from this config's in {len(differing)} tensors "
                         f"(e.g. {differing[:3]}); give the config it was trained with")
    model.load_state_dict(saved)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (see recipes/configs/)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest checkpoint in <output_dir>/checkpoints (a fresh start if there is none)")
    parser.add_argument("--branch-from", type=Path, metavar="CHECKPOINT",
                        help="continue another run's checkpoint (weights, optimizer, step, data position) in output_dir "
                             "with this config's settings, e.g. a learning-rate decay; rerunning the command continues "
                             "the branch from its own newest checkpoint")
    parser.add_argument("--init-from", type=Path, metavar="MODEL_DIR",
                        help="start a fresh run from the weights of a saved model of the same shape (a run's best/, or a "
                             "folder with a checkpoint's model.safetensors and the run's config.json), with a new "
                             "optimizer and schedule: to continue a run whose checkpoint (optimizer state) stayed behind")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. training.epochs=3 model.d_model=64")
    add_data_dir_argument(parser)
    args = parser.parse_intermixed_args(argv)
    if args.init_from is not None and args.branch_from is not None:
        parser.error("--init-from and --branch-from both say where the weights come from: give one")
    cfg = load_config(GenRecConfig, args.config, data_dir_overrides(args))

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    precision = resolve_mixed_precision(cfg.training.mixed_precision)
    threads, why = choose_num_threads(cfg.training.num_threads)
    torch.set_num_threads(threads)  # (a CUDA run uses them for data only)
    logging.getLogger("train_genrec").info("torch threads: %d (%s)", threads, why)
    accelerator = Accelerator(mixed_precision=precision, gradient_accumulation_steps=cfg.training.grad_accum_steps)
    if not accelerator.is_main_process:
        logging.getLogger().setLevel(logging.WARNING)
    out = Path(cfg.output_dir)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    dataset = load_dataset(cfg.dataset, cfg.data_dir)
    split = load_split(cfg, dataset)
    sid_table = SIDTable.load(cfg.tokenizer_dir)
    if list(sid_table.item_ids) != list(split.item_ids):
        missing = sorted(set(split.item_ids) - set(sid_table.item_ids))
        raise ValueError(
            f"{cfg.tokenizer_dir}: the SID table does not cover the catalogue of '{cfg.dataset}' in the same order "
            f"({len(sid_table.item_ids)} vs {len(split.item_ids)} items; {len(missing)} missing, e.g. {missing[:5]})"
        )
    set_seed(cfg.training.seed)  # the model's initial weights (and LoRA's) depend on the seed only
    inputs = build_inputs(cfg, dataset, split, sid_table)
    trie_tokens = inputs.space.codes_to_tokens(sid_table.sids)
    trie = PrefixTrie.from_item_tokens(trie_tokens, level_ranges=inputs.space.level_ranges)
    timings["data_seconds"] = time.perf_counter() - t
    logger.info("%s: %d items, %d train / %d valid / %d test examples; model.type=%s", cfg.dataset, len(split.item_ids),
                len(inputs.train_ds), len(inputs.valid_ds), len(inputs.test_ds), cfg.model.type)
    resume: bool | Path = args.resume
    if args.branch_from is not None:  # (the trainer checks that it is a checkpoint)
        # The branch's own checkpoints, once it has some, are where it continues.
        resume = True if list_checkpoints(out / "checkpoints") else args.branch_from
    if accelerator.is_main_process:
        check_output_dir(out)
        if args.branch_from is not None:
            check_resumable(args.branch_from.parent.parent / "config.json", cfg)  # the parent run: same data and model
        if resume:
            check_resumable(out / "config.json", cfg)
        out.mkdir(parents=True, exist_ok=True)
        # Written first so that a run killed after training can still be evaluated (evaluate_genrec.py reads it).
        atomic_write_json(out / "config.json", asdict(cfg))
        write_manifest(out, RunManifest.from_config(asdict(cfg), inputs.space))
        if inputs.text_tokenizer is not None:
            inputs.text_tokenizer.save_pretrained(out / "text_tokenizer")

    # Cold-start decoding (eval.cold_start) ranks the test split only: validation targets are never cold items.
    cold_catalogue = None
    if cfg.eval.cold_start.method != "off":
        cold_catalogue = ColdCatalogue(trie_tokens, torch.from_numpy(split.untrained_items()), inputs.space.level_ranges)

    def evaluate(model, ds, acc, max_users, desc):
        cold = desc == "test" and cold_catalogue is not None
        return evaluate_generative(model, ds, trie, inputs.eval_collator, num_beams=cfg.eval.num_beams, ks=tuple(cfg.eval.ks),
                                   batch_size=cfg.eval.batch_size, accelerator=acc, max_users=max_users, desc=desc,
                                   search=cfg.eval.search, max_width=cfg.eval.max_width, normalization=cfg.eval.normalization,
                                   cold_start=cfg.eval.cold_start if cold else None, cold_catalogue=cold_catalogue if cold else None)

    valid_sample = fixed_sample(inputs.valid_ds, cfg.eval.valid_max_users, cfg.eval.valid_sample_seed)

    def validate(model, acc):
        return evaluate(model, valid_sample, acc, None, "validate").metrics

    model = inputs.model
    init_from = None
    if args.init_from is not None and not (resume and list_checkpoints(out / "checkpoints")):  # a resumed run has its own
        init_from = str(args.init_from)
        load_weights(model, args.init_from)
        logger.info("initial weights from %s", args.init_from)
    logger.info("model: %.2fM parameters (%.2fM trainable)", sum(p.numel() for p in model.parameters()) / 1e6,
                sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6)
    result = train(model, inputs.train_ds, inputs.train_collator, cfg.training, out, validate_fn=validate,
                   accelerator=accelerator, resume=resume)
    timings["train_seconds"] = result.train_seconds
    timings["train_cpu_seconds"] = result.cpu_seconds

    best = load_model(result.best_dir, tokenizer_dir=out / "text_tokenizer").to(accelerator.device)
    final = {}
    final_splits = (("validation", inputs.valid_ds),) if cfg.eval.final_validation else ()
    for name, ds in (*final_splits, ("test", inputs.test_ds)):
        res = evaluate(best, ds, accelerator, cfg.eval.test_max_users, name)
        final[name] = res.metrics
        timings[f"{name}_eval_seconds"] = res.seconds
        timings[f"{name}_users"] = res.num_users
        logger.info("%s: %s (%d users, %.1f users/s)", name, {k: round(v, 4) for k, v in res.metrics.items()}, res.num_users, res.users_per_second)
        if name != "test":
            continue
        # How often a wrong top-1 is the target's collided sibling (only the dedup code differs): the misses the
        # tokenizer, not the model, makes likely (compare_tokenizers reports it per tokenizer).
        final["test_top1"] = ranking_top1_diagnostics(res.ranked_items, res.targets, sid_table.sids)
        cold_by_user = split.cold_test_users()
        if cold_by_user is not None:
            final["test_cold"], final["test_warm"] = res.subset_metrics(cold_by_user), res.subset_metrics(~cold_by_user)
            logger.info("test, cold targets: %s", {k: round(v, 4) for k, v in final["test_cold"].items()})
        if accelerator.is_main_process:
            # Every evaluated user's test metrics (all users, or the first eval.test_max_users: the file's
            # user_index says which), for paired tests between runs (genrec.eval.per_user).
            write_per_user(out / "per_user_test.json", res, "test", split.user_ids, cold_by_user)

    if accelerator.is_main_process and result.learning_curve:
        plot_learning_curve(out / "learning_curve.csv", out / "learning_curve.png", metric=cfg.training.metric_for_best)
    metrics = {
        **final,
        "model_type": cfg.model.type,
        "best_epoch": result.best_epoch,
        "best_step": result.best_step,
        "steps": result.steps,
        "examples_seen": result.examples_seen,
        "early_stopped": result.early_stopped,
        "mixed_precision": precision,
        "resumed_from": str(result.resumed_from) if result.resumed_from else None,
        "init_from": init_from,
        "timings": timings,
        "num_processes": accelerator.num_processes,
        "skipped_users": len(split.skipped_users),
        "cold_items": int(split.cold_items.sum()) if split.cold_items is not None else 0,
        "cold_valid_dropped": split.cold_valid_dropped,
    }
    if accelerator.is_main_process:
        atomic_write_json(out / "metrics.json", metrics)
    # Tear the process group down before interpreter exit: a gloo group left to the
    # destructors can abort a rank ("terminate called without an active exception").
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


if __name__ == "__main__":
    main()
