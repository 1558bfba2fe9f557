"""The ``genrec`` command line: the recipes and the recommender pipeline behind one command.

    genrec train-tokenizer --config tokenizer_rqvae output_dir=runs/beauty/tokenizer
    genrec train --config genrec_beauty tokenizer_dir=runs/beauty/tokenizer output_dir=runs/beauty/genrec
    genrec evaluate --run runs/beauty/genrec --split test
    genrec export --model runs/beauty/genrec --out runs/beauty/recommender [--push-to-hub you/beauty-tiger]
    genrec export --model runs/beauty/genrec_lora --out runs/beauty/recommender_lora   (LoRA: adapter merged, self-contained)
    genrec recommend --model runs/beauty/recommender --input histories.json --output recommendations.csv
    genrec compare --config compare_ml100k      (recipes/compare_tokenizers.py)

``train-tokenizer``, ``train``, ``evaluate`` and ``compare`` call ``main(argv)`` of the recipes in
``recipes/`` (installed as ``genrec.recipes``) with the remaining arguments, so they take exactly the
recipes' options. ``--config NAME`` also finds the packaged configs by name (``genrec_beauty`` ->
``recipes/configs/genrec_beauty.yaml``). ``recommend`` and ``export`` use
:class:`genrec.pipeline.GenerativeRecommender`.

History and recommendation files: :mod:`genrec.data.histories` (JSON, JSON Lines, CSV/TSV).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from genrec.data.histories import (  # noqa: F401 (InputError, HistoryRequest: re-exported for older imports)
    HistoryRequest,
    InputError,
    file_format,
    read_histories,
    write_recommendations,
)

logger = logging.getLogger("genrec.cli")

PROG = "genrec"


# ---------------------------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class RecipeCommand:
    """A subcommand that runs ``<module>.main(argv)`` of a recipe."""

    module: str
    summary: str
    examples: tuple[str, ...]
    optional: bool = False  # the recipe may not be installed
    takes_config: bool = False  # --config FILE + key=value overrides (genrec.config)


RECIPES = {
    "train-tokenizer": RecipeCommand(
        "genrec.recipes.train_tokenizer",
        "Train a Semantic-ID tokenizer on a dataset's item texts (recipes/train_tokenizer.py).",
        ("genrec train-tokenizer --config tokenizer_rqvae output_dir=runs/beauty/tokenizer",
         "genrec train-tokenizer --config tokenizer_rqkmeans dataset=amazon_beauty codebook_sizes=[128,128,128] output_dir=runs/tok",
         "genrec train-tokenizer --config tokenizer_rqvae output_dir=runs/beauty/tokenizer --push-to-hub you/beauty-sid"),
        takes_config=True),
    "train": RecipeCommand(
        "genrec.recipes.train_genrec",
        "Train a generative recommender on a tokenizer's SIDs and evaluate it on the test split (recipes/train_genrec.py).",
        ("genrec train --config genrec_beauty tokenizer_dir=runs/beauty/tokenizer output_dir=runs/beauty/genrec",
         "genrec train --config genrec_beauty tokenizer_dir=runs/beauty/tokenizer training.max_train_minutes=60",
         "accelerate launch --num_processes 2 -m genrec.cli train --config genrec_beauty   # data-parallel"),
        takes_config=True),
    "evaluate": RecipeCommand(
        "genrec.recipes.evaluate_genrec",
        "Evaluate a trained recommender (a train output folder) on the validation or test split (recipes/evaluate_genrec.py).",
        ("genrec evaluate --run runs/beauty/genrec --split test",
         "genrec evaluate --run runs/beauty/genrec --split test --num-beams 30 --out runs/beauty/eval_beam30.json")),
    "train-sasrec": RecipeCommand(
        "genrec.recipes.train_sasrec",
        "Train SASRec on item IDs, the non-generative reference, on the same split (recipes/train_sasrec.py).",
        ("genrec train-sasrec --config sasrec dataset=ml_100k output_dir=runs/ml100k/sasrec",
         "genrec train-sasrec --config sasrec cold_item_fraction=0.05   # cold-start protocol"),
        takes_config=True),
    "compare": RecipeCommand(
        "genrec.recipes.compare_tokenizers",
        "Compare tokenizers (quality metrics and recommendation results) (recipes/compare_tokenizers.py).",
        ("genrec compare --config compare_ml100k                        # every tokenizer x seed, then the report",
         "genrec compare --config compare_ml100k seeds=[0] output_dir=runs/cmp_quick",
         "genrec compare --config compare_ml100k --report-only          # rebuild tables and plots from finished runs"),
        optional=True),
}

RECOMMEND_EXAMPLES = """examples:
  genrec recommend --model runs/beauty/recommender --input histories.json --output recommendations.csv
  genrec recommend --model runs/beauty/genrec --tokenizer runs/beauty/tokenizer_hf --history B004756YJA B004ZT0SSG --k 5
  genrec recommend --model you/beauty-tiger --input interactions.csv --output recs.json --empty-history popular --strict

histories.json: [{"user_id": "A1", "history": ["B004756YJA", "B004ZT0SSG"]}, ...] or {"A1": ["B004756YJA", ...]}
interactions.csv: user_id,item_id[,timestamp] rows (grouped per user; ordered by timestamp when given)
output: JSON list of {"user_id", "item_ids", "scores", "source", "unknown_item_ids"}; CSV user_id,rank,item_id,score.
scores: log P(item | history) (sum of the SID tokens' log-probabilities); popularity fallback: log(count / total).

--model takes a bundle folder (genrec export / GenerativeRecommender.save_pretrained), a genrec train output
folder (any model.type: t5, causal, lora), or a Hub repo id. Unknown item ids are skipped with a warning that counts them per request (--strict: error).
An empty history (or one of unknown ids only) is an error, or with --empty-history popular gets the most frequent
items of the training data (saved in the bundle as popular_items.json; counted over the training part of the
leave-one-out split)."""

EXPORT_EXAMPLES = """examples:
  genrec export --model runs/beauty/genrec --out runs/beauty/recommender
  genrec export --model runs/beauty/genrec --tokenizer runs/beauty/tokenizer_hf --out runs/beauty/recommender
  genrec export --model runs/beauty/recommender --push-to-hub you/beauty-tiger
  genrec export --model runs/beauty/genrec_lora --base-model /models/qwen2.5-0.5b --out runs/beauty/recommender_lora

Writes a recommender bundle: genrec_config.json (model type, token layout, input format, decoding settings,
metrics), model/ (safetensors; a LoRA run's adapter merged into its base model, so the bundle needs no base
checkpoint), tokenizer/ (the SID tokenizer), for LoRA runs text_tokenizer/ (the extended text tokenizer) and
item_text_tokens.safetensors (the item titles as fed to the model), popular_items.json and user_ids.json (from
the run's dataset, when it can be loaded; --no-user-ids leaves the user ids out), README.md (model card with the
evaluation metrics)."""


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="PATH_OR_REPO",
                        help="recommender bundle folder, genrec train output folder, or Hub repo id")
    parser.add_argument("--tokenizer", metavar="PATH_OR_REPO", default=None,
                        help="SID tokenizer folder or repo id replacing the model's (e.g. a run whose tokenizer_dir moved)")
    parser.add_argument("--data-dir", default=None,
                        help="train output folders: where the run's dataset is (popular items, training users); "
                             "default the run's data_dir, then $GENREC_DATA_DIR")
    parser.add_argument("--base-model", default=None, metavar="PATH",
                        help="LoRA train output folders: the pretrained checkpoint folder the adapter was trained on "
                             "(default: the adapter's base_model_name_or_path, then the run's model.lora.pretrained)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available, else cpu)")
    parser.add_argument("--item-embeddings", choices=["text"], default=None,
                        help="train output folders: rebuild the items' content vectors ('text': the tokenizer's item texts, "
                             "embedded again or read from the cache), for the 'content' cold-start method; a bundle keeps them")


def _recommend_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"{PROG} recommend", formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Recommend items for histories of item ids with a trained recommender.",
                                epilog=RECOMMEND_EXAMPLES)
    _model_arguments(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", metavar="FILE", help="histories: .json, .jsonl, .csv or .tsv ('-' = JSON on stdin)")
    source.add_argument("--history", nargs="+", metavar="ITEM_ID", help="one history given on the command line, oldest first")
    p.add_argument("--output", default="-", metavar="FILE", help="recommendations: .json, .jsonl, .csv or .tsv (default '-': JSON on stdout)")
    p.add_argument("--input-format", choices=["json", "jsonl", "csv", "tsv"], default=None, help="default: from the suffix")
    p.add_argument("--output-format", choices=["json", "jsonl", "csv", "tsv"], default=None, help="default: from the suffix")
    p.add_argument("--k", type=int, default=10, help="items per history (default 10)")
    p.add_argument("--num-beams", type=int, default=None, help="beam width (default: the model's; at least k)")
    p.add_argument("--batch-size", type=int, default=None, help="histories decoded together (default: the model's)")
    p.add_argument("--search", choices=["beam", "exact"], default=None,
                   help="beam search, or the model's exact top k (certified; default: the model's setting)")
    p.add_argument("--cold-start", choices=["off", "prefix", "content", "fusion"], default=None,
                   help="cold items (no training interactions, e.g. added after training): 'prefix' matches them on their "
                        "semantic codes (TIGER), 'content' drafts them by content similarity (needs the items' content "
                        "vectors), 'fusion' merges the model's list with a content ranking of the whole catalogue "
                        "(reciprocal-rank fusion; warm lists change too), 'off' never adds them (default: the model's setting)")
    p.add_argument("--cold-epsilon", type=float, default=None,
                   help="at most floor(epsilon * k) cold items per list (default: the model's, 0.1)")
    p.add_argument("--cold-content-weight", type=float, default=None,
                   help="with --cold-start content: a draft's score adds this x its cosine to the history (default: the model's)")
    p.add_argument("--cold-score-offset", type=float, default=None,
                   help="added to the cold candidates' scores before they compete with the list (default: the model's)")
    p.add_argument("--cold-placement", choices=["score", "tail"], default=None,
                   help="admitted cold items ranked by score, or in the last places (default: the model's)")
    p.add_argument("--cold-history-decay", type=float, default=None,
                   help="content / fusion: a history item a places before the last weighs decay**a in the user's content "
                        "vector (1: the mean, 0: the last item; default: the model's)")
    p.add_argument("--cold-fusion-weight", type=float, default=None,
                   help="with --cold-start fusion: the content ranking's weight against the model's list (default: the model's)")
    p.add_argument("--cold-boost", type=float, default=None,
                   help="with --cold-start fusion: a cold item's content weight is multiplied by this (default: the model's)")
    p.add_argument("--exclude-seen", action="store_true",
                   help="never recommend an item of the history (default: allowed, as the evaluation ranks)")
    p.add_argument("--strict", action="store_true", help="unknown item ids are an error (default: skipped and counted)")
    p.add_argument("--empty-history", choices=["error", "popular"], default="error",
                   help="an empty (or all-unknown) history: 'error' (default) or 'popular' (most frequent training items)")
    return p


def _export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"{PROG} export", formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Save a trained recommender as a self-contained bundle and/or push it to the Hugging Face Hub.",
                                epilog=EXPORT_EXAMPLES)
    _model_arguments(p)
    p.add_argument("--out", default=None, metavar="DIR", help="bundle folder to write (new, empty, or an older bundle)")
    p.add_argument("--push-to-hub", default=None, metavar="REPO_ID", help="also upload the bundle to this Hub model repo")
    p.add_argument("--private", action="store_true", help="create the Hub repo as private")
    p.add_argument("--allow-missing-data", action="store_true",
                   help="export a run folder even when its dataset cannot be loaded (no popular items, every user id hashed)")
    p.add_argument("--no-user-ids", action="store_true",
                   help="leave the training user ids out of the bundle (every user id is then hashed to its user token)")
    return p


def _load_recommender(args, require_training_data: bool = False):
    from genrec.pipeline import GenerativeRecommender

    return GenerativeRecommender.from_pretrained(args.model, tokenizer=args.tokenizer, device=args.device, data_dir=args.data_dir,
                                                 base_model=args.base_model, require_training_data=require_training_data,
                                                 item_embeddings=args.item_embeddings)


def run_recommend(argv: list[str]) -> int:
    args = _recommend_parser().parse_args(argv)
    if args.k < 1:
        raise InputError(f"--k must be >= 1, got {args.k}")
    if args.history is not None:
        requests = [HistoryRequest(None, list(args.history), "--history")]
    else:
        requests = read_histories(args.input, args.input_format)
    if args.output != "-":
        file_format(args.output, args.output_format)  # fail before loading the model
    if args.cold_epsilon is not None and not 0.0 <= args.cold_epsilon <= 1.0:
        raise InputError(f"--cold-epsilon must be in [0, 1], got {args.cold_epsilon}")
    if args.cold_history_decay is not None and not 0.0 <= args.cold_history_decay <= 1.0:
        raise InputError(f"--cold-history-decay must be in [0, 1], got {args.cold_history_decay}")
    for flag, value in (("--cold-fusion-weight", args.cold_fusion_weight), ("--cold-boost", args.cold_boost)):
        if value is not None and not value >= 0.0:
            raise InputError(f"{flag} must be >= 0, got {value}")
    cold_start = {key: value for key, value in (("method", args.cold_start), ("epsilon", args.cold_epsilon),
                                                ("content_weight", args.cold_content_weight),
                                                ("score_offset", args.cold_score_offset), ("placement", args.cold_placement),
                                                ("history_decay", args.cold_history_decay),
                                                ("fusion_weight", args.cold_fusion_weight), ("cold_boost", args.cold_boost))
                  if value is not None}
    from genrec.pipeline import EmptyHistoryError, UnknownItemError

    recommender = _load_recommender(args)
    try:
        results = recommender.recommend([r.history for r in requests], k=args.k, user_ids=[r.user_id for r in requests],
                                        exclude_seen=args.exclude_seen, strict=args.strict, empty_history=args.empty_history,
                                        num_beams=args.num_beams, batch_size=args.batch_size, search=args.search,
                                        cold_start=cold_start or None)
    except UnknownItemError as e:
        ids = e.unknown_item_ids
        raise InputError(f"{requests[e.request_index].where}: {len(ids)} item id(s) not in the catalogue of "
                         f"{recommender.num_items} items: {ids[:10]} (without --strict they are skipped)") from None
    except EmptyHistoryError as e:
        reason = e.reason.replace("empty_history='popular'", "--empty-history popular")
        raise InputError(f"{requests[e.request_index].where}: {reason}") from None
    write_recommendations(results, args.output, args.output_format)
    skipped = [r for r in results if r.unknown_item_ids]
    popular = sum(r.source == "popular" for r in results)
    print(f"{PROG} recommend: {len(results)} request(s), k={args.k}; {sum(len(r.unknown_item_ids) for r in skipped)} unknown "
          f"item id(s) skipped in {len(skipped)} request(s); {popular} popularity fallback(s)"
          + ("" if args.output == "-" else f" -> {args.output}"), file=sys.stderr)
    return 0


def run_export(argv: list[str]) -> int:
    parser = _export_parser()
    args = parser.parse_args(argv)
    if args.out is None and args.push_to_hub is None:
        parser.error("give --out DIR and/or --push-to-hub REPO_ID")
    recommender = _load_recommender(args, require_training_data=not args.allow_missing_data)
    if args.out is not None:
        folder = recommender.save_pretrained(args.out, include_user_ids=not args.no_user_ids)
        print(f"{PROG} export: {recommender!r} -> {folder}", file=sys.stderr)
    if args.push_to_hub is not None:
        commit = recommender.push_to_hub(args.push_to_hub, private=args.private or None, include_user_ids=not args.no_user_ids)
        print(f"{PROG} export: pushed to {args.push_to_hub} ({commit})", file=sys.stderr)
    return 0


LOCAL_COMMANDS = {
    "recommend": (run_recommend, "Recommend items for histories (JSON/CSV in, JSON/CSV out) with a trained recommender."),
    "export": (run_export, "Save a trained run (or a bundle) as a self-contained recommender bundle; push it to the Hub."),
}


def packaged_configs_dir() -> Path:
    """The recipes' YAML configs (``recipes/configs``, installed as package data of ``genrec.recipes``)."""
    import genrec.recipes

    return Path(genrec.recipes.__file__).parent / "configs"


def _resolve_config(argv: list[str]) -> list[str]:
    """``--config NAME`` -> the packaged ``configs/NAME.yaml`` when NAME is not an existing file."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--config" and i + 1 < len(out):
            index, value, prefix = i + 1, out[i + 1], ""
        elif arg.startswith("--config="):
            index, value, prefix = i, arg.split("=", 1)[1], "--config="
        else:
            continue
        if not Path(value).is_file():
            for candidate in (packaged_configs_dir() / value, packaged_configs_dir() / f"{value}.yaml"):
                if candidate.is_file():
                    out[index] = prefix + str(candidate)
                    break
            else:
                from genrec.config import ConfigError

                names = sorted(p.stem for p in packaged_configs_dir().glob("*.yaml"))
                close = difflib.get_close_matches(Path(value).stem, names, n=3)
                hint = f"did you mean {', '.join(close)}?" if close else f"packaged configs: {', '.join(names)}"
                raise ConfigError(f"--config {value}: no such file and no packaged config of that name; {hint}")
        break
    return out


def _recipe_help_preface(name: str, command: RecipeCommand, installed: bool = True) -> str:
    lines = [f"{PROG} {name}: {command.summary}", "", "examples:"] + [f"  {e}" for e in command.examples]
    if command.takes_config:
        configs = sorted(p.stem for p in packaged_configs_dir().glob("*.yaml"))
        lines += ["", f"--config takes a YAML file or the name of a packaged config: {', '.join(configs)}.",
                  "key=value overrides use dotted paths (model.d_model=256); unknown keys are errors."]
    if installed:
        lines += ["", "The recipe's own options follow.", "-" * 80]
    return "\n".join(lines)


def run_recipe(name: str, argv: list[str]) -> int:
    command = RECIPES[name]
    wants_help = any(a in ("-h", "--help") for a in argv)
    try:
        module = importlib.import_module(command.module)
    except ModuleNotFoundError as e:
        if not command.optional or e.name != command.module:
            raise
        message = (f"{PROG} {name}: the tokenizer-comparison recipe is not installed ({command.module}, "
                   "recipes/compare_tokenizers.py); update genrec to a version that ships it")
        if wants_help:
            print(_recipe_help_preface(name, command, installed=False) + "\n\n" + message)
            return 0
        print(message, file=sys.stderr)
        return 2
    if wants_help:
        print(_recipe_help_preface(name, command), flush=True)
    saved = sys.argv[0]
    sys.argv[0] = f"{PROG} {name}"  # argparse names the program after argv[0]: show the subcommand in usage lines
    from genrec.config import ConfigError
    from genrec.data import DataError

    try:
        module.main(_resolve_config(argv))
    except SystemExit as e:  # --help, or argparse usage errors
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except (ConfigError, DataError, FileNotFoundError, NotADirectoryError) as e:
        # a bad config key, dataset or folder (a mistyped --run or tokenizer_dir): the message says it all
        # (other errors keep their traceback)
        print(f"{PROG} {name}: error: {e}", file=sys.stderr)
        return 1
    finally:
        sys.argv[0] = saved
    return 0


def _top_level_help() -> str:
    width = max(len(n) for n in [*RECIPES, *LOCAL_COMMANDS])
    lines = [f"usage: {PROG} COMMAND [options]   ({PROG} COMMAND --help for a command's options and examples)", "",
             "Generative recommendation on Semantic IDs: train a tokenizer and a recommender, evaluate, recommend.", "",
             "commands:"]
    for name in ("train-tokenizer", "train", "evaluate", "export", "recommend", "train-sasrec", "compare"):
        summary = RECIPES[name].summary if name in RECIPES else LOCAL_COMMANDS[name][1]
        lines.append(f"  {name:<{width}}  {summary}")
    lines += ["", "quick start (Amazon Beauty; data in $GENREC_DATA_DIR):",
              "  genrec train-tokenizer --config tokenizer_rqvae output_dir=runs/beauty/tokenizer",
              "  genrec train --config genrec_beauty tokenizer_dir=runs/beauty/tokenizer output_dir=runs/beauty/genrec",
              "  genrec export --model runs/beauty/genrec --out runs/beauty/recommender",
              "  genrec recommend --model runs/beauty/recommender --history B004756YJA B004ZT0SSG --k 5",
              "", "options:", "  -h, --help  show this help and exit", "  --version   print the genrec version and exit"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``genrec`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_top_level_help())
        return 0 if argv else 2
    if argv[0] == "--version":
        from genrec import __version__

        print(f"{PROG} {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in RECIPES and name not in LOCAL_COMMANDS:
        close = difflib.get_close_matches(name, [*RECIPES, *LOCAL_COMMANDS], n=2)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        print(f"{PROG}: unknown command {name!r}{hint} (see {PROG} --help)", file=sys.stderr)
        return 2
    if name in RECIPES:
        return run_recipe(name, rest)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # no "Loading weights" bars around a one-line answer
    try:
        return LOCAL_COMMANDS[name][0](rest)
    except SystemExit as e:  # --help, or argparse usage errors
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except (ValueError, OSError) as e:  # bad input files, broken bundles, missing data: a message, not a traceback
        print(f"{PROG} {name}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
