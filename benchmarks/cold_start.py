"""Cold-start retrieval on Amazon Beauty (issue 21): every method on the same users, per tokenizer.

    GENREC_DATA_DIR=../shared/data bash benchmarks/cold_start_models.sh      # the tokenizers and recommenders
    OMP_NUM_THREADS=1 python benchmarks/cold_start.py --runs runs/cold_start --out benchmarks/results/cold_start

For each ``<runs>/<tokenizer>/genrec`` run (trained under the cold-start protocol), the test users
whose target is a cold item (all of them) and a fixed sample of the others (``--warm-users``, seed 0;
the same users for every tokenizer) are ranked once by plain trie-constrained beam search (20 beams),
and the cold candidates of each method are merged into those lists
(:mod:`genrec.decoding.cold_start`):

* ``plain``: beam search alone;
* ``epsilon_<e>``: TIGER's matching on the semantic codes of the cold items, at most ``floor(e * 10)``
  cold items in a top 10;
* ``content_<e>`` / ``content_fused_<e>``: the 20 cold items closest in content to the history,
  scored by the model on their semantic prefix (``fused``: plus ``--content-weight`` x cosine), same cap;
* ``semantic_knn``: content similarity alone over the whole catalogue (the cold-start reference: the
  mean of the history, history items not excluded);
* ``semantic_knn_recent``: the same with a recency-weighted history (``history_decay`` chosen on
  validation, see below) and the history's own items left out: a much stronger content baseline;
* ``fusion_tuned``: the model's list and that content ranking (warm and cold items) merged by
  reciprocal-rank fusion (:func:`genrec.decoding.cold_start.fuse_rankings`, no cap), the history decay,
  the content weight and the cold boost chosen on validation for the best NDCG@10 over all validation
  users as they occur (the warm sample weighted up to all warm validation users, plus every validation
  user whose target is cold); ``fusion_cold``: the setting with the best validation cold Recall@10 among
  those whose validation warm NDCG@10 is within ``--valid-budget`` of ``fusion_tuned``'s; ``fusion_goal``:
  the issue's criterion on validation, the best validation cold Recall@10 among the settings whose
  validation warm NDCG@10 is within ``--valid-budget`` of plain decoding's.

``<method>_<eps>_tail`` variants put the admitted cold items in the last places, behind a score offset
calibrated on validation users (the largest offset that keeps validation NDCG@10 within ``--valid-budget``
of plain's). ``content_fused_tuned`` also chooses the cosine's weight and the cap on validation: for each
weight of :data:`CONTENT_WEIGHTS` and cap 1 or 2, the calibrated offset, then the setting with the best
cold Recall@10 on the validation users whose target is cold (``SplitData.valid_cold``: never used to
pick a model); test users are not looked at. Decoded lists are cached per run (``--cache``), so the
methods can be re-measured without decoding again.

Writes ``summary.json`` (per tokenizer and method: cold Recall@10/NDCG@10 and warm Recall@10/NDCG@10,
warm NDCG@10's change against plain; per tokenizer, paired tests of the fusion rows against
``semantic_knn_recent`` and how often the cold item nearest in content is the target, by history decay), ``summary.md`` and ``tradeoff.png`` (warm NDCG@10 against cold
Recall@10).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from genrec.data import Examples
from genrec.decoding import ColdCatalogue, ColdStartSettings, GenerationSettings, SearchResult, search
from genrec.decoding.cold_start import add_cold_items, content_candidates, fuse_rankings, prefix_candidates
from genrec.eval.metrics import per_user_metrics
from genrec.eval.report import paired_test
from genrec.inputs import encode_histories, prompt_has_eos
from genrec.runs import open_run
from genrec.tokenizer.io import atomic_write_file, atomic_write_json, atomic_write_text
from genrec.tokenizer_inputs import build_tokenizer_inputs

TOP_K = 10
EPSILONS = (0.1, 0.2)
OFFSET_RANGE = 100.0  # the validation calibration searches score offsets in [-100, 100] (log-probability units)
# content_fused_tuned's grid: the cosine's weight against the model's log-probability (1,000: the cosine alone orders
# the drafts and decides their admission, the model's score only breaks ties).
CONTENT_WEIGHTS = (0.0, 5.0, 10.0, 20.0, 40.0, 80.0, 1000.0)
# fusion's grid (history decay, the content ranking's weight, the cold boost) and semantic_knn_recent's decays.
HISTORY_DECAYS = (0.0, 0.3, 0.5, 0.7, 1.0)
FUSION_WEIGHTS = (0.8, 1.0, 1.2, 1.5, 2.0)
COLD_BOOSTS = (1.0, 1.5, 2.0, 3.0, 5.0)


def subset(examples: Examples, rows: np.ndarray, max_history: int | None = None) -> Examples:
    """The examples ``rows`` (histories cut to their last ``max_history`` items; None: whole)."""
    histories = [examples.history(int(m))[-max_history:] if max_history else examples.history(int(m)) for m in rows]
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(h) for h in histories], out=offsets[1:])
    return Examples(user_index=examples.user_index[rows], target=examples.target[rows],
                    history_values=np.concatenate(histories).astype(np.int64), history_offsets=offsets)


def decode(trained, model, trie, item_tokens: torch.Tensor, examples: Examples, catalogue: ColdCatalogue, args) -> dict:
    """Everything the methods need for ``examples``, decoded once: the plain lists, the cold candidates of both
    methods (with their model scores and cosines) and Semantic-KNN's lists; tensors in example order."""
    space = trained.token_space
    text, eos = trained.inputs().text, prompt_has_eos(trained.model_config)
    settings = GenerationSettings(num_beams=args.num_beams)
    prefix_settings = ColdStartSettings(method="prefix", num_beams=args.num_beams)
    content_settings = ColdStartSettings(method="content", drafts=args.drafts)
    parts = []
    order = np.argsort(examples.history_lengths, kind="stable")  # batches of similar length
    for first in range(0, len(order), args.batch_size):
        rows = order[first : first + args.batch_size]
        batch = subset(examples, rows, trained.manifest.split.max_history)
        ids, mask = encode_histories(batch, item_tokens, space, text, eos=eos)
        history = torch.from_numpy(batch.padded_histories())
        with torch.no_grad():
            plain = search(model, ids, mask, trie, top_k=TOP_K, settings=settings)
            prefix_items, prefix_scores = prefix_candidates(model, ids, mask, catalogue, prefix_settings)
            drafts, draft_scores = content_candidates(model, ids, mask, history, catalogue, content_settings)
        users = catalogue.knn.user_vectors(history)
        cosines = torch.einsum("bd,bmd->bm", users, catalogue.knn.item_vectors[drafts])
        parts.append({"rows": torch.from_numpy(rows), "plain_items": plain.items, "plain_scores": plain.scores,
                      "prefix_items": prefix_items, "prefix_scores": prefix_scores, "drafts": drafts,
                      "draft_scores": draft_scores, "cosines": cosines, "knn": catalogue.knn.rank(history, TOP_K)[0]})
        print(f"  {min(first + args.batch_size, len(order))}/{len(order)} users", flush=True)
    out = {}
    inverse = torch.argsort(torch.cat([p["rows"] for p in parts]))
    for key in parts[0]:
        if key == "rows":
            continue
        width = max(p[key].shape[1] for p in parts)
        fill = -1 if parts[0][key].dtype == torch.long else float("-inf")
        out[key] = torch.cat([torch.nn.functional.pad(p[key], (0, width - p[key].shape[1]), value=fill) for p in parts])[inverse]
    return out


def method_lists(decoded: dict, is_cold: torch.Tensor, method: str, epsilon: float, offset: float, content_weight: float,
                 placement: str = "score", fusion: tuple[float, float, float] | None = None):
    """The top-10 lists of one method (``plain``, ``epsilon``, ``content``, ``content_fused``, ``semantic_knn``,
    ``semantic_knn_recent`` and ``fusion``: these two read ``fusion`` = (history decay, content weight, cold boost))."""
    plain = SearchResult(decoded["plain_items"], decoded["plain_scores"])
    cap = math.floor(epsilon * TOP_K + 1e-9)
    if method == "plain":
        return plain.items
    if method == "semantic_knn":
        return decoded["knn"]
    if method == "semantic_knn_recent":
        return decoded[f"content_{fusion[0]}"][:, :TOP_K]
    if method == "fusion":
        decay, weight, boost = fusion
        return fuse_rankings(plain, decoded[f"content_{decay}"], is_cold, TOP_K, cap, weight, boost).items
    if method == "epsilon":
        candidates, scores = decoded["prefix_items"], decoded["prefix_scores"]
    else:
        candidates = decoded["drafts"]
        scores = decoded["draft_scores"] + (content_weight * decoded["cosines"] if method == "content_fused" else 0.0)
    return add_cold_items(plain, candidates, scores + offset, is_cold, TOP_K, cap, placement).items


def ndcg_at_10(items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return per_user_metrics(items, targets, ks=(TOP_K,))["ndcg@10"]


def calibrate(decoded_valid: dict, targets: torch.Tensor, is_cold, method: str, epsilon: float, content_weight: float,
              args) -> float:
    """The largest score offset whose validation NDCG@10 stays within ``args.valid_budget`` of plain's.

    Validation targets are never cold, so every cold item a list takes there can only cost NDCG: the
    offset buys as many cold items as the budget allows. Bisection over [-R, R], R = OFFSET_RANGE + the
    cosine's weight (a cosine is in [-1, 1]), as the loss grows with the offset; -inf when even the
    lowest offset costs more than the budget.
    """
    plain = float(ndcg_at_10(decoded_valid["plain_items"], targets).mean())

    def within(offset: float) -> bool:
        lists = method_lists(decoded_valid, is_cold, method, epsilon, offset, content_weight, "tail")
        return float(ndcg_at_10(lists, targets).mean()) >= plain * (1 - args.valid_budget)

    span = OFFSET_RANGE + (abs(content_weight) if method == "content_fused" else 0.0)
    low, high = -span, span
    if not within(low):
        return float("-inf")
    if within(high):
        return high
    for _ in range(32):
        middle = (low + high) / 2
        low, high = (middle, high) if within(middle) else (low, middle)
    return low


def take(decoded: dict, rows: torch.Tensor) -> dict:
    """The rows ``rows`` (bool mask or indices) of every tensor of a :func:`decode` result."""
    return {key: value[rows] for key, value in decoded.items()}


def list_metrics(items: torch.Tensor, targets: torch.Tensor, cold_row: torch.Tensor, is_cold: torch.Tensor) -> dict:
    """Cold / warm Recall@10 and NDCG@10 of top-10 lists (``cold_row``: the target is cold), cold items per list."""
    metrics = per_user_metrics(items, targets, ks=(TOP_K,))
    cold_in_list = (is_cold[items.clamp(min=0)] & (items >= 0)).sum(1).float()
    out = {}
    for kind, rows in (("cold", cold_row), ("warm", ~cold_row)):
        if rows.any():
            out[f"{kind}_recall@10"] = float(metrics["recall@10"][rows].mean())
            out[f"{kind}_ndcg@10"] = float(metrics["ndcg@10"][rows].mean())
    return {**out, "cold_items_per_list": float(cold_in_list.mean())}


def decoded_run(trained, model, run_dir: Path, name: str, examples: dict[str, Examples], catalogue: ColdCatalogue,
                item_tokens: torch.Tensor, args) -> dict[str, dict]:
    """:func:`decode` of each set of ``examples``, read from ``--cache`` when it was decoded with the same settings."""
    checkpoint = trained.best_dir / "model.safetensors"
    # Keyed on the model's bytes (not its path or mtime): a copied or moved run reads the same cache.
    model_digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest() if checkpoint.exists() else None
    key = {"model_sha256": model_digest,
           "num_beams": args.num_beams, "drafts": args.drafts,
           "examples": {kind: [int(len(ex)), int(ex.target.sum()), int(ex.user_index.sum())] for kind, ex in examples.items()}}
    path = Path(args.cache) / f"{name}.pt" if args.cache else None
    if path is not None and path.is_file():
        cached = torch.load(path, weights_only=False)
        if cached.get("key") == key:
            print(f"{run_dir}: decoded lists read from {path}", flush=True)
            return cached["decoded"]
    trie = trained.trie()
    decoded = {}
    for kind, ex in examples.items():
        print(f"{run_dir}: {kind} users ({len(ex)})", flush=True)
        decoded[kind] = decode(trained, model, trie, item_tokens, ex, catalogue, args)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_file(path, lambda tmp: torch.save({"key": key, "decoded": decoded}, tmp))
    return decoded


def evaluate_run(run_dir: Path, name: str, rows_by_kind: dict[str, np.ndarray], valid_rows: np.ndarray, embeddings: torch.Tensor,
                 args) -> dict:
    trained = open_run(run_dir, data_dir=args.data_dir)
    split, space = trained.split(), trained.token_space
    model = trained.load_model("cpu").eval()
    # Cold = no training interaction (what a deployed model knows): the protocol's held-out items and items seen only as
    # validation / test targets. Cold metrics are over the test users whose target is one of the protocol's cold items.
    item_tokens = space.codes_to_tokens(trained.sid_table().sids)
    catalogue = ColdCatalogue(item_tokens, torch.from_numpy(split.untrained_items()), space.level_ranges, item_embeddings=embeddings)
    start = time.perf_counter()
    test_rows = np.concatenate([rows_by_kind["cold"], rows_by_kind["warm"]])
    examples = {"valid": subset(split.valid, valid_rows), "valid_cold": split.valid_cold, "test": subset(split.test, test_rows)}
    decoded = decoded_run(trained, model, run_dir, name, examples, catalogue, item_tokens, args)
    for kind, ex in examples.items():  # content rankings of the whole catalogue (no model: not cached)
        history = torch.from_numpy(subset(ex, np.arange(len(ex)), trained.manifest.split.max_history).padded_histories())
        for decay in HISTORY_DECAYS:
            decoded[kind][f"content_{decay}"] = catalogue.knn.rank(history, args.drafts, history_decay=decay, exclude=history)[0]
    valid, valid_cold, test = decoded["valid"], decoded["valid_cold"], decoded["test"]
    valid_targets = torch.from_numpy(split.valid.target[valid_rows])
    valid_cold_targets = torch.from_numpy(split.valid_cold.target)
    targets = torch.from_numpy(split.test.target[test_rows])
    is_cold_row = torch.from_numpy(split.cold_items[split.test.target[test_rows]])
    is_cold = catalogue.is_cold

    def valid_cold_recall(method, eps, offset, weight, placement, fusion=None) -> float:
        items = method_lists(valid_cold, is_cold, method, eps, offset, weight, placement, fusion)
        return float(per_user_metrics(items, valid_cold_targets, ks=(TOP_K,))["recall@10"].mean())

    def valid_all(method, fusion) -> dict:
        """Validation NDCG@10 of the warm sample, cold Recall@10, and NDCG@10 over all validation users as they occur."""
        warm = float(ndcg_at_10(method_lists(valid, is_cold, method, 1.0, 0.0, 0.0, "score", fusion), valid_targets).mean())
        cold_lists = method_lists(valid_cold, is_cold, method, 1.0, 0.0, 0.0, "score", fusion)
        cold = per_user_metrics(cold_lists, valid_cold_targets, ks=(TOP_K,))
        n_warm, n_cold = len(split.valid), len(split.valid_cold)
        overall = (n_warm * warm + n_cold * float(cold["ndcg@10"].mean())) / (n_warm + n_cold)
        return {"history_decay": fusion[0], "fusion_weight": fusion[1], "cold_boost": fusion[2], "valid_warm_ndcg@10": warm,
                "valid_cold_recall@10": float(cold["recall@10"].mean()), "valid_ndcg@10": overall}

    # <method>_<eps>: cold items ranked by score among the list, no offset (TIGER's rule as is);
    # <method>_<eps>_tail: the offset calibrated on validation, admitted cold items in the last places.
    variants = {"plain": ("plain", 0.0, 0.0, args.content_weight, "score"),
                "semantic_knn": ("semantic_knn", 0.0, 0.0, args.content_weight, "score")}
    for eps in EPSILONS:
        for method in ("epsilon", "content", "content_fused"):
            variants[f"{method}_{eps}"] = (method, eps, 0.0, args.content_weight, "score")
            offset = calibrate(valid, valid_targets, is_cold, method, eps, args.content_weight, args)
            variants[f"{method}_{eps}_tail"] = (method, eps, offset, args.content_weight, "tail")
    # content_fused_tuned: the cosine's weight and the cap chosen on the validation users whose target is cold.
    grid = []
    for weight in CONTENT_WEIGHTS:
        for eps in EPSILONS:
            offset = calibrate(valid, valid_targets, is_cold, "content_fused", eps, weight, args)
            grid.append({"content_weight": weight, "epsilon": eps, "score_offset": offset if math.isfinite(offset) else None,
                           "valid_cold_recall@10": valid_cold_recall("content_fused", eps, offset, weight, "tail")})
    best = max(grid, key=lambda row: row["valid_cold_recall@10"])  # first of equals: the lower weight, the lower cap
    variants["content_fused_tuned"] = ("content_fused", best["epsilon"],
                                       best["score_offset"] if best["score_offset"] is not None else float("-inf"),
                                       best["content_weight"], "tail")
    # semantic_knn_recent and fusion: chosen for the best NDCG@10 over all validation users (warm and cold as they occur).
    knn_grid = [valid_all("semantic_knn_recent", (decay, 0.0, 0.0)) for decay in HISTORY_DECAYS]
    knn_best = max(knn_grid, key=lambda row: row["valid_ndcg@10"])
    fusion_grid = [valid_all("fusion", (decay, weight, boost))
                   for decay in HISTORY_DECAYS for weight in FUSION_WEIGHTS for boost in COLD_BOOSTS]
    fusion_best = max(fusion_grid, key=lambda row: row["valid_ndcg@10"])
    near = [row for row in fusion_grid if row["valid_warm_ndcg@10"] >= fusion_best["valid_warm_ndcg@10"] * (1 - args.valid_budget)]
    fusion_cold = max(near, key=lambda row: row["valid_cold_recall@10"])
    plain_warm = float(ndcg_at_10(valid["plain_items"], valid_targets).mean())
    within_goal = [row for row in fusion_grid if row["valid_warm_ndcg@10"] >= plain_warm * (1 - args.valid_budget)]
    chosen = {"semantic_knn_recent": (knn_best, knn_grid), "fusion_tuned": (fusion_best, fusion_grid),
              "fusion_cold": (fusion_cold, None)}
    if within_goal:
        chosen["fusion_goal"] = (max(within_goal, key=lambda row: row["valid_cold_recall@10"]), None)
    for variant, (row, _) in chosen.items():
        method = "semantic_knn_recent" if variant == "semantic_knn_recent" else "fusion"
        variants[variant] = (method, 1.0, 0.0, 0.0, "score", (row["history_decay"], row["fusion_weight"], row["cold_boost"]))
    result, per_user = {}, {}
    for variant, (method, eps, offset, weight, placement, *fusion) in variants.items():
        fusion = fusion[0] if fusion else None
        items = method_lists(test, is_cold, method, eps, offset, weight, placement, fusion)
        result[variant] = list_metrics(items, targets, is_cold_row, is_cold)
        per_user[variant] = per_user_metrics(items, targets, ks=(TOP_K,))
        result[variant]["valid_cold_recall@10"] = valid_cold_recall(method, eps, offset, weight, placement, fusion)
        if placement == "tail":
            result[variant]["score_offset"] = offset if math.isfinite(offset) else None
        if variant == "content_fused_tuned":
            result[variant].update(content_weight=weight, epsilon=eps, search=grid)
        if variant in chosen:
            row, search_grid = chosen[variant]
            result[variant].update({k: v for k, v in row.items() if k not in result[variant]})
            if search_grid is not None:
                result[variant]["search"] = search_grid
    for values in result.values():
        plain = result["plain"]["warm_ndcg@10"]
        values["warm_ndcg@10_change"] = values["warm_ndcg@10"] / plain - 1 if plain > 0 else float("nan")  # nan: no warm hit
    # Fusion against the content ranking alone, paired over the same test users: cold Recall@10 and warm NDCG@10.
    result["_paired"] = {
        variant: {kind: paired_test(per_user[variant][metric][rows].numpy(), per_user["semantic_knn_recent"][metric][rows].numpy())
                  for kind, metric, rows in (("cold_recall@10", "recall@10", is_cold_row), ("warm_ndcg@10", "ndcg@10", ~is_cold_row))}
        for variant in ("fusion_tuned", "fusion_cold", "fusion_goal") if variant in per_user}
    # How often the single cold item nearest in content is the target, by the history's recency weighting (cold-target
    # test users; the content ranking restricted to the cold items, the history left out).
    cold_rows = np.flatnonzero(is_cold_row.numpy())
    cold_history = torch.from_numpy(subset(examples["test"], cold_rows, trained.manifest.split.max_history).padded_histories())
    result["_cold_draft_top1"] = {
        str(decay): float((catalogue.knn.rank(cold_history, 1, items=catalogue.cold, history_decay=decay, exclude=cold_history)[0][:, 0]
                           == targets[is_cold_row]).float().mean())
        for decay in HISTORY_DECAYS}
    result["_seconds"] = time.perf_counter() - start
    return result


METHOD_ORDER = ("plain", "semantic_knn", "semantic_knn_recent", "epsilon", "epsilon_tail", "content", "content_tail", "content_fused",
                "content_fused_tail", "content_fused_tuned", "fusion_tuned", "fusion_cold", "fusion_goal")


def _family(method: str) -> str:
    """``content_fused_0.2_tail`` -> ``content_fused_tail``."""
    return re.sub(r"_0\.\d+", "", method)


def _tokenizers_in_order(summary: dict) -> list[tuple[str, dict]]:
    """The summary's tokenizers, RQ-VAE (the baseline) first, then the default order of ``--tokenizers``."""
    known = ("rqvae", "quasid", "adasid")
    return sorted(summary["tokenizers"].items(), key=lambda kv: (known.index(kv[0]) if kv[0] in known else len(known), kv[0]))


def write_markdown(summary: dict, out: Path) -> None:
    lines = [f"# Cold-start retrieval, Amazon Beauty ({summary['users']['cold']} cold-target test users, "
             f"{summary['users']['warm']} warm ones)", "",
             "| tokenizer | method | cold R@10 | cold N@10 | warm R@10 | warm N@10 | warm N@10 change | cold items / list | "
             "validation cold R@10 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for tokenizer, methods in _tokenizers_in_order(summary):
        for method, v in sorted(methods.items(), key=lambda kv: METHOD_ORDER.index(_family(kv[0])) * 10 + len(kv[0])):
            lines.append(f"| {tokenizer} | {method} | {v['cold_recall@10']:.4f} | {v['cold_ndcg@10']:.4f} | {v['warm_recall@10']:.4f} | "
                         f"{v['warm_ndcg@10']:.4f} | {100 * v['warm_ndcg@10_change']:+.1f}% | {v['cold_items_per_list']:.2f} | "
                         f"{v.get('valid_cold_recall@10', float('nan')):.4f} |")
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n", mode=0o644)


def plot(summary: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10.5, 5))
    markers = {"plain": "o", "epsilon": "s", "content": "^", "content_fused": "v", "semantic_knn": "x",
               "epsilon_tail": "D", "content_tail": "P", "content_fused_tail": "*", "content_fused_tuned": "h",
               "semantic_knn_recent": "X", "fusion_tuned": "p", "fusion_cold": "8", "fusion_goal": "d"}
    for color, (tokenizer, methods) in zip(("C0", "C1", "C2", "C3"), _tokenizers_in_order(summary), strict=False):
        for method, v in methods.items():
            family = _family(method)
            ax.scatter(v["cold_recall@10"], v["warm_ndcg@10"], color=color, marker=markers.get(family, "o"),
                       label=f"{tokenizer} {family}")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_xlabel("cold Recall@10 (test users whose target is a cold item)")
    ax.set_ylabel("warm NDCG@10 (the other test users)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        atomic_write_file(out / "tradeoff.png", lambda tmp: fig.savefig(tmp, dpi=110, format="png"), mode=0o644)
    finally:
        plt.close(fig)


def merged_with_earlier(summary: dict, path: Path, runs: dict) -> dict:
    """``summary`` plus the tokenizers of ``path`` (another call's results) measured with the same users and settings.

    Read at every write, so calls for different tokenizers may run at the same time.
    """
    if not path.is_file():
        return summary
    old = json.loads(path.read_text())
    if old.get("users") != summary["users"] or old.get("settings") != summary["settings"]:
        return summary
    merged = dict(summary)
    for key in ("runs", "tokenizers", "seconds", "paired_vs_semantic_knn_recent", "cold_draft_top1"):
        merged[key] = {**{k: v for k, v in old.get(key, {}).items() if k not in runs}, **summary[key]}
    if summary["command"] not in old["command"]:
        merged["command"] = old["command"] + " ; " + summary["command"]
    return merged


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs/cold_start", help="folder of <tokenizer>/genrec runs")
    parser.add_argument("--tokenizers", nargs="+", default=["rqvae", "quasid", "adasid"])
    parser.add_argument("--out", default="benchmarks/results/cold_start")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--warm-users", type=int, default=3000, help="warm test users sampled (seed 0); 0 = all")
    parser.add_argument("--num-beams", type=int, default=20)
    parser.add_argument("--drafts", type=int, default=20)
    parser.add_argument("--content-weight", type=float, default=20.0, help="content_fused: weight of the cosine")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--valid-users", type=int, default=3000, help="validation users (seed 0) for the offset calibration")
    parser.add_argument("--cache", default="runs/cold_start_decoded",
                        help="folder of decoded lists per run (reused when decoded with the same settings; '' = none)")
    parser.add_argument("--valid-budget", type=float, default=0.015,
                        help="calibrated variants: the largest validation NDCG@10 loss allowed (relative; default 1.5%%)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    runs = {name: Path(args.runs) / name / "genrec" for name in args.tokenizers}
    first = open_run(next(iter(runs.values())), data_dir=args.data_dir)
    split = first.split()
    is_cold_row = split.cold_items[split.test.target]
    warm = np.flatnonzero(~is_cold_row)
    if args.warm_users:
        warm = np.sort(np.random.default_rng(0).choice(warm, size=min(args.warm_users, len(warm)), replace=False))
    rows_by_kind = {"cold": np.flatnonzero(is_cold_row), "warm": warm}
    valid_rows = np.sort(np.random.default_rng(0).choice(len(split.valid), size=min(args.valid_users, len(split.valid)),
                                                         replace=False))
    embeddings = build_tokenizer_inputs(first.dataset().items).x  # the tokenizers' own input: cached text embeddings
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    summary = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
               "date": time.strftime("%Y-%m-%d"), "commit": commit,
               "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), {torch.backends.cpu.get_cpu_capability()}",
               "users": {"cold": len(rows_by_kind["cold"]), "warm": len(rows_by_kind["warm"]),
                         "warm_of": int((~is_cold_row).sum()), "validation": len(valid_rows),
                         "validation_cold": len(split.valid_cold)},
               "settings": {"num_beams": args.num_beams, "drafts": args.drafts, "content_weight": args.content_weight,
                            "top_k": TOP_K, "epsilons": list(EPSILONS), "offset_range": OFFSET_RANGE,
                            "valid_budget": args.valid_budget, "content_weights": list(CONTENT_WEIGHTS)},
               "runs": {name: str(path) for name, path in runs.items()}, "tokenizers": {}, "seconds": {},
               "paired_vs_semantic_knn_recent": {}, "cold_draft_top1": {}}
    for name, run_dir in runs.items():
        result = evaluate_run(run_dir, name, rows_by_kind, valid_rows, embeddings, args)
        summary["seconds"][name] = result.pop("_seconds")
        summary["paired_vs_semantic_knn_recent"][name] = result.pop("_paired")
        summary["cold_draft_top1"][name] = result.pop("_cold_draft_top1")
        summary["tokenizers"][name] = result
        summary = merged_with_earlier(summary, out / "summary.json", runs)
        atomic_write_json(out / "summary.json", summary, mode=0o644)  # partial results survive an interruption
        write_markdown(summary, out)
    plot(summary, out)
    print((out / "summary.md").read_text())
    return summary


if __name__ == "__main__":
    main()
