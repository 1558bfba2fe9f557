"""Train a TIGER-style generative recommender on Semantic IDs and evaluate it on the test split.

    python recipes/train_genrec.py --config recipes/configs/genrec_beauty.yaml \
        tokenizer_dir=runs/beauty/tokenizer output_dir=runs/beauty/genrec training.epochs=5
    accelerate launch --num_processes 2 recipes/train_genrec.py --config ...   # data-parallel

Steps: load the dataset and its leave-one-out split (METHOD.md section 8), load the item -> SID
table written by ``recipes/train_tokenizer.py``, turn histories into SID-token sequences, build a
T5 from the config, train it with the Accelerate loop (validation NDCG@10 picks the best epoch),
then evaluate the best model on the full validation and test sets with trie-constrained beam
search. Writes ``<output_dir>/metrics.json`` with ``validation`` and ``test`` metrics, the model
(``best/``), the vocabulary and the resolved config.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from transformers import T5ForConditionalGeneration

from genrec.config import load_config
from genrec.data import Seq2SeqCollator, build_seq2seq_dataset, leave_one_out_split, load_dataset
from genrec.decoding import PrefixTrie
from genrec.eval.evaluate import evaluate_generative
from genrec.models import T5RecConfig, build_t5
from genrec.tokenizer import SIDTable
from genrec.training import TrainingConfig, atomic_write_json, train
from genrec.vocab import SIDVocab

logger = logging.getLogger("train_genrec")


@dataclass
class EvalConfig:
    num_beams: int = 20
    batch_size: int = 256
    ks: list[int] = field(default_factory=lambda: [5, 10])
    valid_max_users: int | None = None  # validation during training on the first N users (None = all)
    test_max_users: int | None = None  # debugging only: reported metrics must use all users (None)


@dataclass
class GenRecConfig:
    dataset: str = "amazon_beauty"
    data_dir: str | None = None  # None -> $GENREC_DATA_DIR
    tokenizer_dir: str = "runs/beauty/tokenizer"
    output_dir: str = "runs/beauty/genrec"
    max_history: int = 20
    num_user_tokens: int = 2000  # TIGER's hashed user tokens; 0 disables them
    model: T5RecConfig = field(default_factory=T5RecConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (see recipes/configs/)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. training.epochs=3 model.d_model=64")
    args = parser.parse_args(argv)
    cfg = load_config(GenRecConfig, args.config, args.overrides)

    accelerator = Accelerator(mixed_precision=cfg.training.mixed_precision, gradient_accumulation_steps=cfg.training.grad_accum_steps)
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    out = Path(cfg.output_dir)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    dataset = load_dataset(cfg.dataset, cfg.data_dir)
    split = leave_one_out_split(dataset, max_history=cfg.max_history)
    sid_table = SIDTable.load(cfg.tokenizer_dir)
    if list(sid_table.item_ids) != list(split.item_ids):
        missing = sorted(set(split.item_ids) - set(sid_table.item_ids))
        raise ValueError(
            f"{cfg.tokenizer_dir}: the SID table does not cover the catalogue of '{cfg.dataset}' in the same order "
            f"({len(sid_table.item_ids)} vs {len(split.item_ids)} items; {len(missing)} missing, e.g. {missing[:5]})"
        )
    vocab = SIDVocab(tuple(sid_table.codebook_sizes), num_user_tokens=cfg.num_user_tokens)
    item_tokens = vocab.codes_to_tokens(torch.as_tensor(sid_table.sids))
    user_token = vocab.user_token if cfg.num_user_tokens else None
    train_ds = build_seq2seq_dataset(split.train, item_tokens, add_user_token=user_token)
    valid_ds = build_seq2seq_dataset(split.valid, item_tokens, add_user_token=user_token)
    test_ds = build_seq2seq_dataset(split.test, item_tokens, add_user_token=user_token)
    trie = PrefixTrie.from_item_tokens(item_tokens, vocab)
    collator = Seq2SeqCollator()
    timings["data_seconds"] = time.perf_counter() - t
    logger.info("%s: %d items, %d train / %d valid / %d test examples; vocab %d tokens",
                cfg.dataset, len(split.item_ids), len(train_ds), len(valid_ds), len(test_ds), vocab.size)

    def validate(model, acc):
        res = evaluate_generative(model, valid_ds, trie, collator, num_beams=cfg.eval.num_beams, ks=tuple(cfg.eval.ks),
                                  batch_size=cfg.eval.batch_size, accelerator=acc, max_users=cfg.eval.valid_max_users, desc="validate")
        return res.metrics

    model = build_t5(vocab, cfg.model)
    logger.info("model: %.2fM parameters", sum(p.numel() for p in model.parameters()) / 1e6)
    result = train(model, train_ds, collator, cfg.training, out, validate_fn=validate, accelerator=accelerator)
    timings["train_seconds"] = result.train_seconds

    best = T5ForConditionalGeneration.from_pretrained(result.best_dir).to(accelerator.device)
    final = {}
    for name, ds in (("validation", valid_ds), ("test", test_ds)):
        res = evaluate_generative(best, ds, trie, collator, num_beams=cfg.eval.num_beams, ks=tuple(cfg.eval.ks),
                                  batch_size=cfg.eval.batch_size, accelerator=accelerator, max_users=cfg.eval.test_max_users, desc=name)
        final[name] = res.metrics
        timings[f"{name}_eval_seconds"] = res.seconds
        timings[f"{name}_users"] = res.num_users
        logger.info("%s: %s (%d users, %.1f users/s)", name, {k: round(v, 4) for k, v in res.metrics.items()}, res.num_users, res.users_per_second)

    metrics = {
        **final,
        "best_epoch": result.best_epoch,
        "steps": result.steps,
        "timings": timings,
        "num_processes": accelerator.num_processes,
        "skipped_users": len(split.skipped_users),
    }
    if accelerator.is_main_process:
        atomic_write_json(out / "vocab.json", vocab.to_dict())
        atomic_write_json(out / "config.json", asdict(cfg))
        atomic_write_json(out / "metrics.json", metrics)
    return metrics


if __name__ == "__main__":
    main()
