"""Evaluate a trained generative recommender (a ``train_genrec.py`` output folder) on a split.

    python recipes/evaluate_genrec.py --run runs/beauty/genrec --split test
    python recipes/evaluate_genrec.py --run runs/beauty/genrec --split test --num-beams 30 --out runs/beauty/eval_beam30.json
    python recipes/evaluate_genrec.py --run runs/beauty/genrec_lora --split test --per-user runs/beauty/genrec_lora/per_user_test.json

Every run type (``model.type`` t5, causal, lora). Reloads the run's config, its token layout
(``token_space.json``; runs older than it: ``vocab.json``) and best model
(:func:`genrec.models.load_model`: a LoRA adapter goes on its base checkpoint with the run's
``text_tokenizer/``), the tokenizer's SID table and the dataset split, builds the evaluation rows with
the training recipe's own ``build_inputs`` (LoRA inputs mix item titles and the prompt exactly as in
training), then ranks the whole catalogue for every user with trie-constrained beam search. With the
run's beam width and batch size (the defaults) the metrics equal the run's ``metrics.json``. Prints
and writes Recall/NDCG and the wall time.

``--per-user PATH`` also writes every user's metrics, for paired significance tests between runs:

- ``.json``: ``{"split", "metric_names", "num_users", "user_index": [...], "user_id": [...],
  "<metric>": [...], ...}``, lists aligned, users in ascending ``user_index`` (row of the split's
  ``user_ids``);
- ``.safetensors``: tensors ``user_index`` (int64) and one float32 tensor per metric, the split and
  metric names in the metadata.

The mean of a metric's per-user values is the reported metric.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import time
import types
import typing
from pathlib import Path

import torch

from genrec.config import from_dict
from genrec.data import load_dataset
from genrec.decoding import PrefixTrie
from genrec.eval.evaluate import EvalResult, evaluate_generative
from genrec.models import TokenSpace, load_model
from genrec.recipes.train_genrec import GenRecConfig, build_inputs, load_split
from genrec.tokenizer import SIDTable
from genrec.training import atomic_write_json, atomic_write_text
from genrec.vocab import SIDVocab

logger = logging.getLogger("evaluate_genrec")


@dataclasses.dataclass
class LoadedRun:
    """A run ready to evaluate: its config, split, the recipe's inputs (datasets, collator), token space and best model."""

    run: Path
    cfg: GenRecConfig
    split: object
    inputs: object
    space: TokenSpace
    sid_table: SIDTable
    model: torch.nn.Module

    def dataset(self, split: str):
        return self.inputs.test_ds if split == "test" else self.inputs.valid_ds


def _known_keys(cls, data: dict, where: str) -> dict:
    """``data`` without the keys ``cls`` (a config dataclass, recursively) does not have: runs written by an
    older recipe may hold settings that no longer exist; they are dropped with a warning."""
    hints = typing.get_type_hints(cls)
    names = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    out = {}
    for key, value in data.items():
        if key not in names:
            logger.warning("%s: ignoring the unknown setting %r (from an older recipe version?)", where, key)
            continue
        tp = names[key]
        args = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) in (typing.Union, types.UnionType) else []
        tp = args[0] if len(args) == 1 else tp
        out[key] = _known_keys(tp, value, f"{where}.{key}") if dataclasses.is_dataclass(tp) and isinstance(value, dict) else value
    return out


def run_config(run: Path) -> GenRecConfig:
    """The run's ``config.json`` as the recipe's config, with its paths resolved as the pipeline resolves them
    (as given when they exist from here, else relative to the directory the training ran in)."""
    from genrec.pipeline import _run_path

    raw = json.loads((run / "config.json").read_text())
    cfg = from_dict(GenRecConfig, _known_keys(GenRecConfig, raw, str(run / "config.json")), str(run / "config.json"))
    cfg.dataset = _run_path(run, raw, cfg.dataset)
    cfg.data_dir = _run_path(run, raw, cfg.data_dir)
    cfg.tokenizer_dir = _run_path(run, raw, cfg.tokenizer_dir)
    if cfg.model.lora.pretrained:
        cfg.model.lora.pretrained = _run_path(run, raw, cfg.model.lora.pretrained)
    if cfg.model.lora.tokenizer:
        cfg.model.lora.tokenizer = _run_path(run, raw, cfg.model.lora.tokenizer)
    return cfg


def load_run(run: str | Path, data_dir: str | None = None, device: str | torch.device | None = None,
             base_model: str | None = None) -> LoadedRun:
    """Rebuild a run's evaluation: config, dataset split, the recipe's ``build_inputs`` and the best model on ``device``.

    ``base_model``: LoRA runs whose pretrained checkpoint moved: its folder (replaces ``model.lora.pretrained``).
    """
    from genrec.pipeline import check_run_folder

    run = Path(run)
    check_run_folder(run)
    cfg = run_config(run)
    if data_dir is not None:
        cfg.data_dir = data_dir
    if base_model is not None:
        cfg.model.lora.pretrained = str(base_model)
    if cfg.model.type == "lora" and not Path(cfg.model.lora.pretrained).is_dir():
        raise FileNotFoundError(f"{run}: the LoRA run's pretrained checkpoint {cfg.model.lora.pretrained!r} is not a folder; "
                                "pass --base-model PATH")
    dataset = load_dataset(cfg.dataset, cfg.data_dir)
    split = load_split(cfg, dataset)
    sid_table = SIDTable.load(cfg.tokenizer_dir)
    if list(sid_table.item_ids) != list(split.item_ids):
        raise ValueError(f"{cfg.tokenizer_dir}: the SID table does not cover the catalogue of '{cfg.dataset}' in the same order "
                         f"({len(sid_table.item_ids)} vs {len(split.item_ids)} items)")
    inputs = build_inputs(cfg, dataset, split, sid_table, with_model=False)  # the recipe's own rows; the model comes from best/
    if (run / "token_space.json").is_file():
        saved = TokenSpace.from_dict(json.loads((run / "token_space.json").read_text()))
    else:
        saved = TokenSpace.from_vocab(SIDVocab.from_dict(json.loads((run / "vocab.json").read_text())))
    if saved != inputs.space:
        raise ValueError(f"{run}: the token layout rebuilt from the run's config ({inputs.space}) differs from the run's "
                         f"({saved}); did the pretrained tokenizer change since training?")
    base_path = cfg.model.lora.pretrained if cfg.model.type == "lora" else None
    model = load_model(run / "best", tokenizer_dir=run / "text_tokenizer", base_path=base_path)
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return LoadedRun(run, cfg, split, inputs, saved, sid_table, model.to(device).eval())


def evaluate_run(loaded: LoadedRun, split: str = "test", *, num_beams: int | None = None, batch_size: int | None = None,
                 max_users: int | None = None, show_progress: bool = True, search: str | None = None,
                 max_width: int | None = None) -> EvalResult:
    """:func:`evaluate_generative` on the run's ``split`` rows as the training recipe evaluates them."""
    cfg = loaded.cfg
    trie = PrefixTrie.from_item_tokens(loaded.space.codes_to_tokens(loaded.sid_table.sids), level_ranges=loaded.space.level_ranges)
    return evaluate_generative(loaded.model, loaded.dataset(split), trie, loaded.inputs.eval_collator,
                               num_beams=num_beams or cfg.eval.num_beams, ks=tuple(cfg.eval.ks),
                               batch_size=batch_size or cfg.eval.batch_size, max_users=max_users, show_progress=show_progress,
                               desc=split, search=search or cfg.eval.search, max_width=max_width or cfg.eval.exact_max_width)


def write_per_user(path: str | Path, res: EvalResult, split_name: str, user_ids: list[str], cold_by_user=None) -> Path:
    """Per-user metrics of ``res`` to ``path`` (``.safetensors``, else JSON), users in ``res.user_index`` order.

    ``cold_by_user``: optional (users,) bool by user index (cold-start protocol): written as the
    ``cold_target`` column, 1 where the user's target is a cold item.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    users = res.user_index.long().cpu()
    per_user = dict(res.per_user)
    if cold_by_user is not None:
        per_user["cold_target"] = torch.as_tensor(cold_by_user, dtype=torch.float32)[users]
    names = list(per_user)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        tmp = path.with_name(f".{path.name}.tmp")
        save_file({"user_index": users.contiguous(), **{n: per_user[n].float().cpu().contiguous() for n in names}}, str(tmp),
                  metadata={"format": "genrec-per-user-metrics", "split": split_name, "metric_names": json.dumps(names),
                            "num_users": str(len(users))})
        os.replace(tmp, path)
    else:
        obj = {"split": split_name, "metric_names": names, "num_users": len(users), "user_index": users.tolist(),
               "user_id": [user_ids[i] for i in users.tolist()], **{n: per_user[n].cpu().tolist() for n in names}}
        atomic_write_text(path, json.dumps(obj) + "\n")
    return path


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="output_dir of train_genrec.py (holds config.json, token_space.json, best/)")
    p.add_argument("--split", choices=["validation", "test"], default="test")
    p.add_argument("--num-beams", type=int, default=None, help="default: the run's eval.num_beams")
    p.add_argument("--batch-size", type=int, default=None, help="default: the run's eval.batch_size")
    p.add_argument("--search", choices=["beam", "exact"], default=None,
                   help="beam search or the model's exact top-k (default: the run's eval.search)")
    p.add_argument("--max-width", type=int, default=None, help="exact search's node budget (default: the run's eval.exact_max_width)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--base-model", default=None, metavar="PATH",
                   help="LoRA runs: the pretrained checkpoint folder (default: the run's model.lora.pretrained)")
    p.add_argument("--max-users", type=int, default=None, help="debugging only")
    p.add_argument("--out", default=None, help="JSON file for the results (default <run>/eval_<split>.json)")
    p.add_argument("--per-user", default=None, metavar="PATH",
                   help="also write every user's metrics (user index + each metric) to PATH: .json or .safetensors")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    run = Path(args.run)
    loaded = load_run(run, args.data_dir, base_model=args.base_model)
    res = evaluate_run(loaded, args.split, num_beams=args.num_beams, batch_size=args.batch_size, max_users=args.max_users,
                       search=args.search, max_width=args.max_width)
    num_beams = args.num_beams or loaded.cfg.eval.num_beams
    result = {"split": args.split, "metrics": res.metrics, "num_users": res.num_users, "seconds": res.seconds,
              "users_per_second": res.users_per_second, "num_beams": num_beams, "model_type": loaded.cfg.model.type,
              "search": args.search or loaded.cfg.eval.search, "search_stats": res.search_stats,
              "device": str(next(loaded.model.parameters()).device),
              "machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "date": time.strftime("%Y-%m-%d")}
    cold_by_user = loaded.split.cold_test_users() if args.split == "test" else None
    if cold_by_user is not None:
        result["metrics_cold"], result["metrics_warm"] = res.subset_metrics(cold_by_user), res.subset_metrics(~cold_by_user)
    if args.per_user:
        result["per_user_file"] = str(write_per_user(args.per_user, res, args.split, loaded.split.user_ids, cold_by_user))
    atomic_write_json(args.out or run / f"eval_{args.split}.json", result)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
