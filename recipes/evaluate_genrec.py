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
import platform
import time
from pathlib import Path

import torch

from genrec.data.split import SplitData
from genrec.decoding import ColdCatalogue, ColdStartSettings
from genrec.eval.evaluate import EvalResult, evaluate_generative
from genrec.eval.per_user import write_per_user  # also imported from here by runs of older versions
from genrec.eval.sid_diagnostics import ranking_top1_diagnostics
from genrec.inputs import ModelInputs
from genrec.models import TokenSpace
from genrec.runs import TrainedRun, open_run
from genrec.tokenizer import SIDTable
from genrec.training import atomic_write_json

logger = logging.getLogger("evaluate_genrec")


@dataclasses.dataclass
class LoadedRun:
    """A run ready to evaluate: the opened run, its split, inputs (datasets, collator), token space and best model."""

    run: Path
    trained: TrainedRun
    split: SplitData
    inputs: ModelInputs
    space: TokenSpace
    sid_table: SIDTable
    model: torch.nn.Module

    def dataset(self, split: str):
        return self.inputs.test_ds if split == "test" else self.inputs.valid_ds


def load_run(run: str | Path, data_dir: str | None = None, device: str | torch.device | None = None,
             base_model: str | None = None) -> LoadedRun:
    """Rebuild a run's evaluation (:func:`genrec.runs.open_run`): split, inputs and the best model on ``device``.

    ``base_model``: LoRA runs whose pretrained checkpoint moved: its folder (replaces ``model.lora.pretrained``).
    """
    trained = open_run(run, data_dir=data_dir, base_model=base_model)
    model = trained.load_model(device)  # first: a LoRA run's missing base checkpoint is named before anything loads it
    inputs = trained.inputs()  # the recipe's own rows
    return LoadedRun(Path(run), trained, trained.split(), inputs, trained.token_space, trained.sid_table(), model)


def evaluate_run(loaded: LoadedRun, split: str = "test", *, num_beams: int | None = None, batch_size: int | None = None,
                 max_users: int | None = None, show_progress: bool = True, search: str | None = None,
                 max_width: int | None = None, cold_start: ColdStartSettings | None = None) -> EvalResult:
    """:func:`evaluate_generative` on the run's ``split`` rows as the training recipe evaluates them.

    ``cold_start``: cold-start decoding of the test split (default: the run's ``eval.cold_start``).
    """
    generation = loaded.trained.generation
    cold_start = cold_start or generation.cold_start
    cold_catalogue = None
    if split == "test" and cold_start.method != "off":  # validation targets are never cold items
        cold_catalogue = ColdCatalogue(loaded.space.codes_to_tokens(loaded.sid_table.sids),
                                       torch.from_numpy(loaded.split.untrained_items()), loaded.space.level_ranges)
    return evaluate_generative(loaded.model, loaded.dataset(split), loaded.trained.trie(), loaded.inputs.eval_collator,
                               num_beams=num_beams or generation.num_beams, ks=tuple(loaded.trained.manifest.ks),
                               batch_size=batch_size or generation.batch_size, max_users=max_users, show_progress=show_progress,
                               desc=split, search=search or generation.search, max_width=max_width or generation.max_width,
                               normalization=generation.normalization,
                               cold_start=cold_start if cold_catalogue is not None else None,
                               cold_catalogue=cold_catalogue)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="output_dir of train_genrec.py (holds config.json, token_space.json, best/)")
    p.add_argument("--split", choices=["validation", "test"], default="test")
    p.add_argument("--num-beams", type=int, default=None, help="default: the run's eval.num_beams")
    p.add_argument("--batch-size", type=int, default=None, help="default: the run's eval.batch_size")
    p.add_argument("--search", choices=["beam", "exact"], default=None,
                   help="beam search or the model's exact top-k (default: the run's eval.search)")
    p.add_argument("--max-width", type=int, default=None, help="exact search's node budget (default: the run's eval.max_width)")
    p.add_argument("--cold-start", choices=["off", "prefix"], default=None,
                   help="test split: add cold items (no training interactions) by their semantic codes (TIGER); "
                        "default: the run's eval.cold_start")
    p.add_argument("--cold-epsilon", type=float, default=None, help="with --cold-start prefix: at most floor(epsilon * K) "
                   "cold items per list (default: the run's, 0.1)")
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
    cold_start = loaded.trained.generation.cold_start
    overrides = {k: v for k, v in (("method", args.cold_start), ("epsilon", args.cold_epsilon)) if v is not None}
    if overrides:
        cold_start = ColdStartSettings.from_dict(overrides, base=cold_start)
    res = evaluate_run(loaded, args.split, num_beams=args.num_beams, batch_size=args.batch_size, max_users=args.max_users,
                       search=args.search, max_width=args.max_width, cold_start=cold_start)
    num_beams = args.num_beams or loaded.trained.generation.num_beams
    result = {"split": args.split, "metrics": res.metrics, "num_users": res.num_users, "seconds": res.seconds,
              "users_per_second": res.users_per_second, "num_beams": num_beams, "model_type": loaded.trained.model_type,
              "search": args.search or loaded.trained.generation.search, "search_stats": res.search_stats,
              "cold_start": dataclasses.asdict(cold_start) if args.split == "test" and cold_start.method != "off" else None,
              "device": str(next(loaded.model.parameters()).device),
              "machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "date": time.strftime("%Y-%m-%d")}
    cold_by_user = loaded.split.cold_test_users() if args.split == "test" else None
    if cold_by_user is not None:
        result["metrics_cold"], result["metrics_warm"] = res.subset_metrics(cold_by_user), res.subset_metrics(~cold_by_user)
    result["top1"] = ranking_top1_diagnostics(res.ranked_items, res.targets, loaded.sid_table.sids)
    if args.per_user:
        result["per_user_file"] = str(write_per_user(args.per_user, res, args.split, loaded.split.user_ids, cold_by_user))
    atomic_write_json(args.out or run / f"eval_{args.split}.json", result)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
