"""Evaluate a trained generative recommender (a ``train_genrec.py`` output folder) on a split.

    python recipes/evaluate_genrec.py --run runs/beauty/genrec --split test
    python recipes/evaluate_genrec.py --run runs/beauty/genrec --split test --num-beams 30 --out runs/beauty/eval_beam30.json

Reloads the run's config, vocabulary and best model, the tokenizer's SID table and the dataset
split, then ranks the whole catalogue for every user with trie-constrained beam search. Prints and
writes Recall/NDCG and the wall time.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from transformers import T5ForConditionalGeneration

from genrec.data import Seq2SeqCollator, build_seq2seq_dataset, leave_one_out_split, load_dataset
from genrec.decoding import PrefixTrie
from genrec.eval.evaluate import evaluate_generative
from genrec.tokenizer import SIDTable
from genrec.training import atomic_write_json
from genrec.vocab import SIDVocab


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="output_dir of train_genrec.py (holds config.json, vocab.json, best/)")
    p.add_argument("--split", choices=["validation", "test"], default="test")
    p.add_argument("--num-beams", type=int, default=None, help="default: the run's eval.num_beams")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--max-users", type=int, default=None, help="debugging only")
    p.add_argument("--out", default=None, help="JSON file for the results (default <run>/eval_<split>.json)")
    args = p.parse_args(argv)
    run = Path(args.run)
    for f in ("config.json", "vocab.json", "best"):
        if not (run / f).exists():
            raise FileNotFoundError(f"{run / f} is missing: is {run} a finished train_genrec.py output folder?")
    cfg = json.loads((run / "config.json").read_text())
    vocab = SIDVocab.from_dict(json.loads((run / "vocab.json").read_text()))
    table = SIDTable.load(cfg["tokenizer_dir"])
    tokens = vocab.codes_to_tokens(table.sids)
    split = leave_one_out_split(load_dataset(cfg["dataset"], args.data_dir or cfg["data_dir"]), max_history=cfg["max_history"])
    examples = split.test if args.split == "test" else split.valid
    dataset = build_seq2seq_dataset(examples, tokens, add_user_token=vocab.user_token if vocab.num_user_tokens else None)
    model = T5ForConditionalGeneration.from_pretrained(run / "best").to("cuda" if torch.cuda.is_available() else "cpu")
    num_beams = args.num_beams or cfg["eval"]["num_beams"]
    res = evaluate_generative(model, dataset, PrefixTrie.from_item_tokens(tokens, vocab), Seq2SeqCollator(), num_beams=num_beams,
                              ks=tuple(cfg["eval"]["ks"]), batch_size=args.batch_size or cfg["eval"]["batch_size"], max_users=args.max_users,
                              desc=args.split)
    result = {"split": args.split, "metrics": res.metrics, "num_users": res.num_users, "seconds": res.seconds,
              "users_per_second": res.users_per_second, "num_beams": num_beams, "device": str(model.device),
              "machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "date": time.strftime("%Y-%m-%d")}
    atomic_write_json(args.out or run / f"eval_{args.split}.json", result)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
