"""Train a generative recommender on Semantic IDs and evaluate it on the test split.

    python recipes/train_genrec.py --config recipes/configs/genrec_beauty.yaml \\
        tokenizer_dir=runs/beauty/tokenizer output_dir=runs/beauty/genrec training.epochs=5
    python recipes/train_genrec.py --config recipes/configs/genrec_beauty_causal.yaml   # decoder-only
    python recipes/train_genrec.py --config recipes/configs/genrec_beauty_lora.yaml model.lora.pretrained=PATH
    python recipes/train_genrec.py --config ... --resume       # continue a killed run from its last checkpoint
    accelerate launch --num_processes 2 recipes/train_genrec.py --config ...   # data-parallel (GPUs)
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 recipes/train_genrec.py --config ...  # CPU processes

``model.type`` picks the recommender: ``t5`` (TIGER's encoder-decoder; the T5 fields of ``model``;
``model.encoder=causal model.train_targets=every_item`` trains every item of a history window as a
target in one pass, see ``genrec.models.t5.CausalEncoderT5``),
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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from transformers import AutoTokenizer

from genrec.config import add_data_dir_argument, check_positive, data_dir_overrides, load_config, require
from genrec.data import (
    CausalCollator,
    EveryTargetCollator,
    Seq2SeqCollator,
    build_causal_dataset,
    build_causal_window_dataset,
    build_every_target_dataset,
    build_seq2seq_dataset,
    item_texts,
    load_dataset,
)
from genrec.data.split import SplitData, cold_item_mask, leave_one_out_split
from genrec.decoding import PrefixTrie
from genrec.eval.evaluate import evaluate_generative
from genrec.eval.report import plot_learning_curve
from genrec.models import (
    CausalRecConfig,
    LoRARecConfig,
    T5RecConfig,
    TokenSpace,
    build_causal,
    build_lora,
    build_t5,
    load_model,
)
from genrec.models.lora import extend_tokenizer, is_seq2seq_checkpoint
from genrec.tokenizer import SIDTable
from genrec.training import (
    TrainingConfig,
    atomic_write_json,
    choose_num_threads,
    resolve_mixed_precision,
    train,
)
from genrec.training.checkpoint import check_output_dir
from genrec.vocab import SIDVocab

logger = logging.getLogger("train_genrec")
MODEL_TYPES = ("t5", "causal", "lora")
CAUSAL_TRAIN_TARGETS = ("last", "every_item")


@dataclass
class EvalConfig:
    num_beams: int = 20
    batch_size: int = 256
    ks: list[int] = field(default_factory=lambda: [5, 10])
    valid_max_users: int | None = None  # validation during training on a fixed sample of N users (None = all)
    valid_sample_seed: int | None = 0  # the sample's seed (None = the first N users)
    test_max_users: int | None = None  # debugging only: reported metrics must use all users (None)
    final_validation: bool = True  # re-rank the full validation split with the best model at the end (false: test only)
    search: str = "beam"  # "beam" | "exact" (the model's exact top-k, genrec.decoding.exact_top_k, from width num_beams)
    exact_max_width: int = 512  # exact search's node budget: the widest frontier per level

    def __post_init__(self):
        check_positive(self, "num_beams", "batch_size")
        check_positive(self, "valid_max_users", "test_max_users", allow_none=True)
        require(bool(self.ks) and all(k >= 1 for k in self.ks), f"ks must be a non-empty list of cut-offs >= 1, got {self.ks!r}")
        require(self.num_beams >= max(self.ks), f"num_beams ({self.num_beams}) must be >= the largest of ks ({max(self.ks)}): "
                "beam search returns at most num_beams items")
        require(self.search in ("beam", "exact"), f"search must be 'beam' or 'exact', got {self.search!r}")
        require(self.exact_max_width >= self.num_beams, f"exact_max_width ({self.exact_max_width}) must be >= num_beams")


@dataclass
class ModelConfig(T5RecConfig):
    """``type`` picks the model; the T5 fields (inherited, top level for older configs) size the t5 model."""

    type: str = "t5"  # "t5" | "causal" | "lora"
    causal: CausalRecConfig = field(default_factory=CausalRecConfig)
    lora: LoRARecConfig = field(default_factory=LoRARecConfig)

    def t5(self) -> T5RecConfig:
        return T5RecConfig(**{f.name: getattr(self, f.name) for f in fields(T5RecConfig)})


@dataclass
class GenRecConfig:
    dataset: str = "amazon_beauty"
    data_dir: str | None = None  # None -> $GENREC_DATA_DIR
    tokenizer_dir: str = "runs/beauty/tokenizer"
    output_dir: str = "runs/beauty/genrec"
    max_history: int = 20
    cold_item_fraction: float = 0.0  # cold-start protocol: hold this fraction of items out of training
    cold_item_seed: int = 0
    num_user_tokens: int = 2000  # TIGER's hashed user tokens; 0 disables them
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        check_positive(self, "max_history")
        check_positive(self, "num_user_tokens", minimum=0)
        require(0.0 <= self.cold_item_fraction < 1.0, f"cold_item_fraction must be in [0, 1), got {self.cold_item_fraction!r}")
        require(self.model.type in MODEL_TYPES, f"model.type must be one of {MODEL_TYPES}, got {self.model.type!r}")
        require(self.model.causal.train_targets in CAUSAL_TRAIN_TARGETS,
                f"model.causal.train_targets must be one of {CAUSAL_TRAIN_TARGETS}, got {self.model.causal.train_targets!r}")
        metric, _, k = self.training.metric_for_best.partition("@")
        require(int(k) in self.eval.ks, f"training.metric_for_best={self.training.metric_for_best} needs {k} in eval.ks "
                f"({self.eval.ks}): validation reports only those cut-offs")


@dataclass
class Inputs:
    """Everything model-specific about the data: built once, used for training, validation and test."""

    model: torch.nn.Module | None  # None from build_inputs(with_model=False)
    space: TokenSpace
    train_ds: object
    valid_ds: object
    test_ds: object
    train_collator: object
    eval_collator: object
    vocab: SIDVocab | None = None
    text_tokenizer: object = None


def load_split(cfg, dataset) -> SplitData:
    """The run's leave-one-out split, under the cold-start protocol when ``cfg.cold_item_fraction`` > 0.

    The tokenizer in ``cfg.tokenizer_dir`` must have held out exactly the same items (its
    ``metrics.json`` lists them): a tokenizer that saw the cold items would leak them.
    """
    cold = cold_item_mask(len(dataset.item_ids), cfg.cold_item_fraction, cfg.cold_item_seed)
    check_tokenizer_holdout(Path(cfg.tokenizer_dir), dataset.item_ids, cold)
    return leave_one_out_split(dataset, max_history=cfg.max_history, cold_items=cold)


def check_tokenizer_holdout(tokenizer_dir: Path, item_ids: list[str], cold) -> None:
    """Raise unless the tokenizer's held-out items (``metrics.json: cold_item_ids``) are the run's cold items."""
    record = tokenizer_dir / "metrics.json"
    held = json.loads(record.read_text()).get("cold_item_ids", []) if record.is_file() else None
    wanted = [item for item, is_cold in zip(item_ids, cold, strict=True) if is_cold] if cold is not None else []
    if cold is not None and held is None:
        raise ValueError(f"{tokenizer_dir}: no metrics.json, so it cannot be checked that the tokenizer held out the "
                         f"{len(wanted)} cold items; train it with recipes/train_tokenizer.py cold_item_fraction=... cold_item_seed=...")
    if held is not None and sorted(held) != sorted(wanted):
        raise ValueError(f"{tokenizer_dir}: the tokenizer held out {len(held)} item(s) but this run holds out {len(wanted)} "
                         f"(cold_item_fraction / cold_item_seed must match the tokenizer's), e.g. tokenizer "
                         f"{sorted(set(held) - set(wanted))[:3]} vs run {sorted(set(wanted) - set(held))[:3]}")


def build_inputs(cfg: GenRecConfig, dataset, split, sid_table: SIDTable, with_model: bool = True) -> Inputs:
    """Model + datasets + collators for ``cfg.model.type``. Evaluation rows are prompts only for every type.

    ``with_model=False`` (evaluating a trained run, whose model is loaded from its folder) leaves
    ``Inputs.model`` None and, for LoRA, does not load the pretrained checkpoint at all.
    """
    kind = cfg.model.type
    if kind not in MODEL_TYPES:
        raise ValueError(f"model.type must be one of {MODEL_TYPES}, got {kind!r}")
    vocab, text_tokenizer, text_kwargs, model = None, None, {}, None
    if kind == "lora":
        lcfg = cfg.model.lora
        if with_model:
            model, text_tokenizer, space = build_lora(lcfg, sid_table.codebook_sizes, cfg.num_user_tokens)
        else:
            text_tokenizer = AutoTokenizer.from_pretrained(lcfg.tokenizer or lcfg.pretrained, trust_remote_code=False)
            space = extend_tokenizer(text_tokenizer, sid_table.codebook_sizes, cfg.num_user_tokens, lcfg.sid_token_format)
        seq2seq = is_seq2seq_checkpoint(lcfg.pretrained)
        if lcfg.item_text_template:
            texts = item_texts(dataset.items, lcfg.item_text_template, on_empty="item_id")
            encoded = text_tokenizer(texts, add_special_tokens=False)["input_ids"]
            text_kwargs["item_text_tokens"] = [ids[: lcfg.max_item_text_tokens] for ids in encoded]
        if lcfg.prompt:
            text_kwargs["prompt_tokens"] = text_tokenizer(lcfg.prompt, add_special_tokens=False)["input_ids"]
    else:
        vocab = SIDVocab(tuple(sid_table.codebook_sizes), num_user_tokens=cfg.num_user_tokens)
        space = TokenSpace.from_vocab(vocab)
        seq2seq = kind == "t5"
        if with_model:
            model = build_t5(vocab, cfg.model.t5()) if seq2seq else build_causal(vocab, cfg.model.causal)
    item_tokens = space.codes_to_tokens(sid_table.sids)
    causal_encoder = kind == "t5" and cfg.model.encoder == "causal"  # its prompts end without eos
    common = {"add_user_token": space.user_token_fn, "eos_id": None if causal_encoder else space.eos_id, **text_kwargs}
    targets = cfg.model.causal.train_targets
    if targets not in CAUSAL_TRAIN_TARGETS:
        raise ValueError(f"model.causal.train_targets must be one of {CAUSAL_TRAIN_TARGETS}, got {targets!r}")
    train_collator = None
    if kind == "causal" and targets == "every_item":
        train_ds = build_causal_window_dataset(split.train_sequences, item_tokens, space.user_token_fn,
                                               max_history=cfg.max_history, eos_id=space.eos_id)
    elif kind == "t5" and cfg.model.train_targets == "every_item":
        train_ds = build_every_target_dataset(split.train_sequences, item_tokens, space.user_token_fn, max_history=cfg.max_history)
        train_collator = EveryTargetCollator(pad_id=space.pad_id)
    else:
        train_ds = (build_seq2seq_dataset if seq2seq else build_causal_dataset)(split.train, item_tokens, **common)
    eval_collator = Seq2SeqCollator(pad_id=space.pad_id)  # prompt rows; evaluate_generative left-aligns them for causal models
    return Inputs(
        model=model, space=space, vocab=vocab, text_tokenizer=text_tokenizer,
        train_ds=train_ds,
        valid_ds=build_seq2seq_dataset(split.valid, item_tokens, **common),
        test_ds=build_seq2seq_dataset(split.test, item_tokens, **common),
        train_collator=train_collator or (eval_collator if seq2seq else CausalCollator(pad_id=space.pad_id)),
        eval_collator=eval_collator,
    )


# What a run is: resuming with another dataset, tokenizer, split or model would continue a different run.
RUN_KEYS = ("dataset", "tokenizer_dir", "max_history", "cold_item_fraction", "cold_item_seed", "num_user_tokens", "model")


def check_resumable(saved_config: Path, config: dict) -> None:
    """Refuse ``--resume`` when the run folder's ``config.json`` differs in a :data:`RUN_KEYS` entry
    (``training.allow_config_change_on_resume=true`` accepts it; training settings are checked by the trainer)."""
    if not saved_config.is_file():
        return
    saved = json.loads(saved_config.read_text())
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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (see recipes/configs/)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest checkpoint in <output_dir>/checkpoints (a fresh start if there is none)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. training.epochs=3 model.d_model=64")
    add_data_dir_argument(parser)
    args = parser.parse_intermixed_args(argv)
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
    item_tokens = inputs.space.codes_to_tokens(sid_table.sids)
    trie = PrefixTrie.from_item_tokens(item_tokens, level_ranges=inputs.space.level_ranges)
    timings["data_seconds"] = time.perf_counter() - t
    logger.info("%s: %d items, %d train / %d valid / %d test examples; model.type=%s", cfg.dataset, len(split.item_ids),
                len(inputs.train_ds), len(inputs.valid_ds), len(inputs.test_ds), cfg.model.type)
    if accelerator.is_main_process:
        check_output_dir(out)
        if args.resume:
            check_resumable(out / "config.json", asdict(cfg))
        out.mkdir(parents=True, exist_ok=True)
        # Written first so that a run killed after training can still be evaluated (evaluate_genrec.py reads it).
        atomic_write_json(out / "config.json", asdict(cfg))
        atomic_write_json(out / "token_space.json", inputs.space.to_dict())
        if inputs.vocab is not None:
            atomic_write_json(out / "vocab.json", inputs.vocab.to_dict())
        if inputs.text_tokenizer is not None:
            inputs.text_tokenizer.save_pretrained(out / "text_tokenizer")

    def evaluate(model, ds, acc, max_users, desc):
        return evaluate_generative(model, ds, trie, inputs.eval_collator, num_beams=cfg.eval.num_beams, ks=tuple(cfg.eval.ks),
                                   batch_size=cfg.eval.batch_size, accelerator=acc, max_users=max_users, desc=desc,
                                   search=cfg.eval.search, max_width=cfg.eval.exact_max_width)

    valid_sample = fixed_sample(inputs.valid_ds, cfg.eval.valid_max_users, cfg.eval.valid_sample_seed)

    def validate(model, acc):
        return evaluate(model, valid_sample, acc, None, "validate").metrics

    model = inputs.model
    logger.info("model: %.2fM parameters (%.2fM trainable)", sum(p.numel() for p in model.parameters()) / 1e6,
                sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6)
    result = train(model, inputs.train_ds, inputs.train_collator, cfg.training, out, validate_fn=validate,
                   accelerator=accelerator, resume=args.resume)
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
        cold_by_user = split.cold_test_users()
        if cold_by_user is not None:
            final["test_cold"], final["test_warm"] = res.subset_metrics(cold_by_user), res.subset_metrics(~cold_by_user)
            logger.info("test, cold targets: %s", {k: round(v, 4) for k, v in final["test_cold"].items()})
        if accelerator.is_main_process and cfg.eval.test_max_users is None:
            # Every user's test metrics, for paired tests between runs (the format of evaluate_genrec --per-user).
            from genrec.recipes.evaluate_genrec import write_per_user

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
