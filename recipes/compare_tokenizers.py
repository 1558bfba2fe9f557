"""Compare SID tokenizers end to end: every tokenizer x seed, same split, same recommender budget.

    python recipes/compare_tokenizers.py --config recipes/configs/compare_ml100k.yaml
    python recipes/compare_tokenizers.py --config recipes/configs/compare_ml100k.yaml seeds=[0] output_dir=runs/cmp_quick
    genrec compare --config compare_ml100k

For each (tokenizer, seed), each step in its own child process (a crash or leak in one run cannot touch
the others, and no recipe imports another): train the tokenizer (``recipes/train_tokenizer.py`` with the tokenizer's config, ``seed`` and the
shared ``dataset``), train the recommender on its SIDs (``recipes/train_genrec.py`` with the shared
``recommender`` config and budget, ``training.seed`` = seed), evaluate the best model on the test
split with per-user metrics (``recipes/evaluate_genrec.py --per-user``), then write
``<output_dir>/records/<tokenizer>-seed<k>.json`` atomically. That file is the only mark of a
finished run: on a rerun, finished runs are skipped; an unfinished one (crash, kill) has its folders
deleted and is redone from scratch, so nothing is half-counted.

Several processes may run the same command at once (e.g. one per core or per GPU): each run is claimed
with a lock (``<output_dir>/claims/<tag>/``, released by the operating system when its process ends,
however it ends), so a process skips the runs another one is training and never deletes their folders.

``references`` adds non-generative baselines on the same split (``recipes/train_sasrec.py``: SASRec
on item IDs) with the same seeds; they appear as rows of the same tables (no tokenizer metrics).

Cold-start protocol: ``cold_item_fraction`` > 0 holds that fraction of items (``cold_item_seed``)
out of every tokenizer's and recommender's training (see ``genrec.data.split``); the report then
adds ``cold:*`` columns (test users whose target is a cold item, with their own paired tests) and
``warm:*`` columns.

After every run the report is rewritten under ``<output_dir>/report/`` (:func:`genrec.eval.report.write_report`):
``results.csv`` / ``results.json`` (one row per run), ``summary.md`` (mean +- std over seeds of
Recall/NDCG@5/10, the tokenizer-quality metrics and the training/evaluation times; paired bootstrap
and t tests of each tokenizer against ``baseline`` on per-user test metrics) and PNG plots.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from genrec.config import ConfigError, add_data_dir_argument, data_dir_overrides, load_config
from genrec.eval.report import write_report
from genrec.tokenizer.io import atomic_write_text
from genrec.training.checkpoint import RunLock

logger = logging.getLogger("compare_tokenizers")
RECIPES = Path(__file__).resolve().parent
METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")


@dataclass
class TokenizerSpec:
    config: str  # a tokenizer recipe config (path, or a file name in recipes/configs/)
    overrides: list[str] = field(default_factory=list)  # key=value overrides for this tokenizer only


@dataclass
class RecommenderSpec:
    config: str = "genrec_beauty.yaml"
    overrides: list[str] = field(default_factory=list)  # the shared model and training budget


@dataclass
class CompareConfig:
    dataset: str = "ml_100k"
    data_dir: str | None = None  # None -> $GENREC_DATA_DIR
    output_dir: str = "runs/compare"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    baseline: str = "rqvae"  # the paired tests compare every tokenizer against this one
    tokenizers: dict = field(default_factory=dict)  # name -> {config: ..., overrides: [...]} (a TokenizerSpec)
    tokenizer_overrides: list[str] = field(default_factory=list)  # applied to every tokenizer (e.g. epochs=100)
    recommender: RecommenderSpec = field(default_factory=RecommenderSpec)
    references: dict = field(default_factory=dict)  # name -> {config: sasrec.yaml, overrides: [...]}: item-ID baselines
    cold_item_fraction: float = 0.0  # cold-start protocol (0 = off)
    cold_item_seed: int = 0
    reevaluate: bool = True  # reload the best model and re-rank the test split (a check that the saved run reproduces its metrics)
    title: str = ""


def tokenizer_spec(cfg: CompareConfig, name: str) -> TokenizerSpec:
    value = cfg.tokenizers[name] if name in cfg.tokenizers else cfg.references[name]
    where = "tokenizers" if name in cfg.tokenizers else "references"
    if isinstance(value, str):  # shorthand: name: tokenizer_rqvae.yaml
        return TokenizerSpec(config=value)
    if not isinstance(value, dict) or "config" not in value or set(value) - {"config", "overrides"}:
        raise ConfigError(f"{where}.{name}: expected a config file name or {{config: FILE, overrides: [key=value, ...]}}, got {value!r}")
    overrides = value.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) and "=" in o for o in overrides):
        raise ConfigError(f"{where}.{name}.overrides: expected a list of 'key=value' strings, got {overrides!r}")
    return TokenizerSpec(config=value["config"], overrides=list(overrides))


def _config_path(name: str) -> str:
    path = Path(name)
    if path.exists():
        return str(path)
    packaged = RECIPES / "configs" / name
    if packaged.exists():
        return str(packaged)
    raise ConfigError(f"config file '{name}' not found (as a path or in {RECIPES / 'configs'})")


def _atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1), mode=0o644)


class RecipeFailed(RuntimeError):
    """A recipe's child process exited with an error (its output is in the run's log)."""


def _run_recipe(script: str, args: list[str], log) -> None:
    """``python recipes/<script> <args>`` in a child process, its output appended to ``log`` (an open file)."""
    log.flush()
    code = subprocess.call([sys.executable, str(RECIPES / script), *args], stdout=log, stderr=subprocess.STDOUT,
                           env={**os.environ, "TQDM_DISABLE": "1"})
    if code != 0:
        raise RecipeFailed(f"{script} exited with {code}")


def run_one(cfg: CompareConfig, name: str, seed: int, log) -> dict:
    """Tokenizer -> recommender -> per-user test evaluation for one (tokenizer, seed); returns the record.

    Each recipe runs as its own script in a child process, its output going to ``log`` (an open file).
    """
    out = Path(cfg.output_dir)
    tag = f"{name}-seed{seed}"
    tok_dir, run_dir = out / "tokenizers" / tag, out / "runs" / tag
    spec = tokenizer_spec(cfg, name)
    data = [f"dataset={cfg.dataset}"] + ([f"data_dir={cfg.data_dir}"] if cfg.data_dir else [])
    data += [f"cold_item_fraction={cfg.cold_item_fraction}", f"cold_item_seed={cfg.cold_item_seed}"]
    if name in cfg.references:
        return run_reference(cfg, name, seed, spec, data, run_dir, log)

    start = time.perf_counter()
    _run_recipe("train_tokenizer.py", ["--config", _config_path(spec.config), *data, f"seed={seed}", f"output_dir={tok_dir}",
                                       "log_every=0", *cfg.tokenizer_overrides, *spec.overrides], log)
    tokenizer_seconds = time.perf_counter() - start
    _run_recipe("train_genrec.py", ["--config", _config_path(cfg.recommender.config), *data, f"tokenizer_dir={tok_dir}",
                                    f"output_dir={run_dir}", f"training.seed={seed}", *cfg.recommender.overrides], log)
    per_user_path = run_dir / "per_user_test.json"  # written by train_genrec
    evaluation = None
    if cfg.reevaluate:
        eval_path = run_dir / "eval_test.json"
        _run_recipe("evaluate_genrec.py", ["--run", str(run_dir), "--split", "test", "--per-user", str(run_dir / "per_user_reevaluated.json"),
                                           "--out", str(eval_path)] + (["--data-dir", cfg.data_dir] if cfg.data_dir else []), log)
        evaluation = json.loads(eval_path.read_text())

    tok = json.loads((tok_dir / "metrics.json").read_text())
    rec = json.loads((run_dir / "metrics.json").read_text())
    tok_metrics = {k: v for k, v in tok.items() if k not in ("history", "timings", "config")}
    return {
        "tokenizer": name, "seed": seed, "metrics": rec["test"], "validation": rec.get("validation"), "tokenizer_metrics": tok_metrics,
        "timings": {"tokenizer_train_seconds": tok["timings"]["train_seconds"], "tokenizer_total_seconds": tokenizer_seconds,
                    "recommender_train_seconds": rec["timings"]["train_seconds"], "test_eval_seconds": rec["timings"]["test_eval_seconds"]},
        "steps": rec.get("steps"), "per_user_file": str(per_user_path.relative_to(out)), "tokenizer_dir": str(tok_dir.relative_to(out)),
        "run_dir": str(run_dir.relative_to(out)), "re_evaluated_test": evaluation["metrics"] if evaluation else None,
        **_test_subset_fields(rec),
    }


def _test_subset_fields(run_metrics: dict) -> dict:
    """The cold-start protocol's subset metrics and the top-1 diagnostics of a run's metrics.json (those it has)."""
    return {key: run_metrics[key] for key in ("test_cold", "test_warm", "test_top1") if key in run_metrics}


def run_reference(cfg: CompareConfig, name: str, seed: int, spec: TokenizerSpec, data: list[str], run_dir: Path, log) -> dict:
    """A non-generative reference (``recipes/train_sasrec.py``) on the same split and seed; returns the record."""
    out = Path(cfg.output_dir)
    _run_recipe("train_sasrec.py", ["--config", _config_path(spec.config), *data, f"output_dir={run_dir}", f"training.seed={seed}",
                                    *spec.overrides], log)
    rec = json.loads((run_dir / "metrics.json").read_text())
    return {
        "tokenizer": name, "seed": seed, "kind": "reference", "metrics": rec["test"], "validation": rec["validation"],
        "tokenizer_metrics": {},
        "timings": {"recommender_train_seconds": rec["timings"]["train_seconds"], "test_eval_seconds": rec["timings"]["test_eval_seconds"]},
        "steps": rec.get("steps"), "per_user_file": str((run_dir / "per_user_test.json").relative_to(out)), "tokenizer_dir": None,
        "run_dir": str(run_dir.relative_to(out)), **_test_subset_fields(rec),
    }


def load_record(out: Path, record: dict) -> dict:
    """A record with its per-user metrics and collision-group sizes loaded (for the report)."""
    from genrec.tokenizer import SIDTable

    full = dict(record)
    per_user = json.loads((out / record["per_user_file"]).read_text())
    order = np.argsort(np.asarray(per_user["user_index"]))  # pair users by index across runs
    full["per_user"] = {m: np.asarray(per_user[m])[order] for m in METRICS if m in per_user}
    if "cold_target" in per_user:  # cold-start protocol: the cold / warm target users, same users in every run
        cold = np.asarray(per_user["cold_target"])[order] > 0
        for part, mask in (("cold", cold), ("warm", ~cold)):
            full["per_user"].update({f"{part}:{m}": full["per_user"][m][mask] for m in METRICS if m in full["per_user"]})
            full["metrics"] = {**full["metrics"], **{f"{part}:{m}": float(full["per_user"][m][mask].mean()) for m in METRICS
                                                     if m in full["per_user"] and mask.any()}}
    if record.get("tokenizer_dir"):
        table = SIDTable.load(out / record["tokenizer_dir"])
        _, counts = np.unique(np.asarray(table.sids[:, :-1]), axis=0, return_counts=True)
        full["group_sizes"] = counts
    return full


def report(cfg: CompareConfig) -> dict | None:
    out = Path(cfg.output_dir)
    records = []
    for name in [*cfg.tokenizers, *cfg.references]:
        for seed in cfg.seeds:
            path = out / "records" / f"{name}-seed{seed}.json"
            if path.exists():
                records.append(load_record(out, json.loads(path.read_text())))
    if not records:
        return None
    metrics = list(METRICS)
    if cfg.cold_item_fraction > 0:
        metrics += [f"{part}:{m}" for part in ("cold", "warm") for m in ("recall@10", "ndcg@10")]
    return write_report(records, out / "report", baseline=cfg.baseline, metrics=metrics, title=cfg.title or f"Tokenizer comparison on {cfg.dataset}")


def run_claimed(cfg: CompareConfig, name: str, seed: int, tag: str) -> str | None:
    """One (tokenizer, seed) run whose claim this process holds: its record and the report, or the failure's message."""
    out = Path(cfg.output_dir)
    record_path = out / "records" / f"{tag}.json"
    if record_path.exists():  # finished by another process between the first look and the claim
        return None
    for partial in (out / "tokenizers" / tag, out / "runs" / tag):
        if partial.exists():  # an unfinished run (its process is gone: the claim was free): redo it, never half-count it
            logger.info("%s: removing the unfinished %s", tag, partial)
            shutil.rmtree(partial)
    log_path = out / "logs" / f"{tag}.log"
    log_path.unlink(missing_ok=True)
    logger.info("%s: tokenizer -> recommender -> test evaluation (log: %s)", tag, log_path)
    try:
        with open(log_path, "w") as log:
            record = run_one(cfg, name, seed, log)
    except RecipeFailed as error:
        logger.error("%s failed: %s, see %s", tag, error, log_path)
        return f"{error}, see {log_path}"
    _atomic_write_json(record_path, record)
    logger.info("%s: test %s", tag, {k: round(v, 4) for k, v in record["metrics"].items()})
    report(cfg)
    return None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config (see recipes/configs/compare_*.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. seeds=[0] output_dir=runs/cmp")
    add_data_dir_argument(parser)
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the finished runs, train nothing")
    args = parser.parse_intermixed_args(argv)
    cfg = load_config(CompareConfig, _config_path(args.config), data_dir_overrides(args))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not cfg.tokenizers:
        raise ConfigError("tokenizers: list at least one tokenizer (name: {config: ..., overrides: [...]})")
    clash = sorted(set(cfg.tokenizers) & set(cfg.references))
    if clash:
        raise ConfigError(f"references: {clash} are also tokenizer names")
    for name in [*cfg.tokenizers, *cfg.references]:
        _config_path(tokenizer_spec(cfg, name).config)  # every config exists before anything trains
    _config_path(cfg.recommender.config)
    if cfg.baseline not in cfg.tokenizers:
        raise ConfigError(f"baseline '{cfg.baseline}' is not one of the tokenizers {sorted(cfg.tokenizers)}")
    out = Path(cfg.output_dir)
    for sub in ("records", "logs", "tokenizers", "runs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    _atomic_write_json(out / "config.json", asdict(cfg))

    failures, elsewhere = {}, []
    if not args.report_only:
        for seed in cfg.seeds:
            for name in [*cfg.tokenizers, *cfg.references]:
                tag = f"{name}-seed{seed}"
                if (out / "records" / f"{tag}.json").exists():
                    logger.info("%s: finished earlier, reused", tag)
                    continue
                with contextlib.ExitStack() as claim:
                    try:
                        claim.enter_context(RunLock(out / "claims" / tag))
                    except RuntimeError:  # another process of this comparison trains it
                        logger.info("%s: running in another process, skipped", tag)
                        elsewhere.append(tag)
                        continue
                    error = run_claimed(cfg, name, seed, tag)
                if error:
                    failures[tag] = error
    result = report(cfg) or {}
    if result:
        print((out / "report" / "summary.md").read_text())
    if elsewhere:
        logger.info("%d run(s) still training in other processes (%s): when they end, the last process to finish "
                    "rewrites the report (or run --report-only)", len(elsewhere), ", ".join(elsewhere))
    if failures:
        raise SystemExit(f"{len(failures)} run(s) failed (rerun the same command to retry them): {failures}")
    return result


if __name__ == "__main__":
    main()
