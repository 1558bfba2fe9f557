"""A trained generative run fused with the content ranking, on the standard leave-one-out split (all users).

    GENREC_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python benchmarks/content_fusion.py \\
        --run runs/beauty_full/item_pooled_12500 --out benchmarks/results/content_fusion/item_pooled_3.20M

The generative model is a model of the catalogue's head and the training-free content KNN covers the tail
(``benchmarks/popularity_breakdown.py``); this measures what the two give together. For every validation and
test user: the run's own top 10 (trie-constrained beam search with the run's beam width, exactly as its
``metrics.json`` was measured: the "model" row must equal it) and the content ranking of
``benchmarks/content_knn.py`` (recency-weighted MiniLM history, the history's own items left out, top
``--content-depth``) are merged by reciprocal-rank fusion (:func:`genrec.decoding.cold_start.fuse_rankings`,
the rule of ``cold_start.method: fusion``: rank r of the model's list scores 1 / (11 + r), of the content
ranking ``weight`` / (11 + r)). The history decay and the content weight are chosen on all validation users
(NDCG@10); test users are never looked at for a choice. Test metrics are reported for every setting, the chosen
one first, with paired bootstrap tests of the chosen fusion against the model alone and the content ranking alone.

The decoded lists are cached (``--cache``), so the grid can be re-measured without decoding again. Writes
``metrics.json`` (command, machine, date, commit, run, every setting's validation and test metrics, the tests)
and ``per_user_test.json.gz`` of the chosen fusion (the per-user format ``benchmarks/paired_runs.py`` reads).
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from genrec.decoding.cold_start import fuse_rankings
from genrec.decoding.decode import SearchResult
from genrec.eval.evaluate import evaluate_generative
from genrec.eval.metrics import per_user_metrics
from genrec.eval.report import paired_test
from genrec.models.semantic_knn import SemanticKNN
from genrec.runs import open_run
from genrec.tokenizer.io import atomic_write_file, atomic_write_json
from genrec.tokenizer_inputs import build_tokenizer_inputs

KS = (5, 10)
DECAYS = (0.3, 0.5)
WEIGHTS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def decoded_lists(run, split_name: str, cache: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's top-10 lists for a split, rows in the split's order: ``(ranked (U, 10), user_index (U,))``."""
    path = cache / f"ranked_{split_name}.pt"
    if path.is_file():
        saved = torch.load(path)
        return saved["ranked"], saved["user_index"]
    model = run.load_model("cpu")
    inputs = run.inputs()
    dataset = inputs.test_ds if split_name == "test" else inputs.valid_ds
    generation = run.generation
    result = evaluate_generative(model, dataset, run.trie(), inputs.eval_collator, num_beams=generation.num_beams, ks=KS,
                                 batch_size=generation.batch_size, desc=split_name, search=generation.search,
                                 max_width=generation.max_width, normalization=generation.normalization)
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write_file(path, lambda tmp: torch.save({"ranked": result.ranked_items, "user_index": result.user_index}, tmp))
    return result.ranked_items, result.user_index


def in_split_order(ranked: torch.Tensor, users: torch.Tensor, split_users: np.ndarray) -> torch.Tensor:
    """``ranked``'s rows reordered to ``split_users`` (every user present exactly once, else an error)."""
    row_of = {int(u): i for i, u in enumerate(users.tolist())}
    missing = [int(u) for u in split_users if int(u) not in row_of]
    if missing or len(row_of) != len(split_users):
        raise RuntimeError(f"decoded lists cover {len(row_of)} users, the split has {len(split_users)} "
                           f"(missing e.g. {missing[:5]}): a stale --cache?")
    return ranked[torch.tensor([row_of[int(u)] for u in split_users])]


def content_lists(knn: SemanticKNN, examples, decay: float, depth: int, batch_size: int = 2048) -> torch.Tensor:
    """(U, depth) content ranking of every example, its own history left out."""
    history = torch.from_numpy(examples.padded_histories())
    return torch.cat([knn.rank(rows, depth, history_decay=decay, exclude=rows)[0]
                      for rows in torch.split(history, batch_size)])


def fused(model_lists: torch.Tensor, content: torch.Tensor, weight: float, num_items: int) -> torch.Tensor:
    found = SearchResult(model_lists, torch.zeros(model_lists.shape, dtype=torch.float32))
    no_cold = torch.zeros(num_items, dtype=torch.bool)
    return fuse_rankings(found, content, no_cold, top_k=max(KS), max_cold=max(KS), fusion_weight=weight).items


def means(per_user: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: float(values.mean()) for name, values in per_user.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a recipes/train_genrec.py output folder (finished: has metrics.json)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--data-dir", default=None, help="default: the run's, or $GENREC_DATA_DIR")
    parser.add_argument("--content-depth", type=int, default=50, help="content items fused per user")
    parser.add_argument("--cache", default=None, help="decoded lists (default runs/content_fusion_cache/<run folder name>)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    run = open_run(args.run, data_dir=args.data_dir)
    split = run.split()
    cache = Path(args.cache or Path("runs/content_fusion_cache") / Path(args.run).name)
    knn = SemanticKNN(build_tokenizer_inputs(run.dataset().items).x)
    num_items = knn.num_items

    rows = {}
    for split_name, examples in (("validation", split.valid), ("test", split.test)):
        ranked, users = decoded_lists(run, split_name, cache)
        targets = torch.from_numpy(examples.target)
        model_lists = in_split_order(ranked, users, examples.user_index)
        rows[split_name] = {"targets": targets, "model": model_lists,
                            "content": {d: content_lists(knn, examples, d, args.content_depth) for d in DECAYS}}

    def scores(split_name: str, decay: float | None, weight: float | None) -> dict[str, torch.Tensor]:
        r = rows[split_name]
        if decay is None:
            lists = r["model"]
        elif weight is None:
            lists = r["content"][decay][:, : max(KS)]
        else:
            lists = fused(r["model"], r["content"][decay], weight, num_items)
        return per_user_metrics(lists, r["targets"], ks=KS)

    settings = {"model": (None, None), **{f"content_decay{d}": (d, None) for d in DECAYS},
                **{f"fusion_decay{d}_weight{w}": (d, w) for d in DECAYS for w in WEIGHTS}}
    results = {}
    for name, (decay, weight) in settings.items():
        valid, test = scores("validation", decay, weight), scores("test", decay, weight)
        results[name] = {"history_decay": decay, "content_weight": weight, "validation": means(valid), "test": means(test),
                         "per_user_test": test}
        print(f"{name}: validation N@10 {results[name]['validation']['ndcg@10']:.4f}, test R@10 "
              f"{results[name]['test']['recall@10']:.4f} N@10 {results[name]['test']['ndcg@10']:.4f}", flush=True)

    run_metrics = run.metrics()  # metrics.json, read once
    reported = run_metrics.get("test", {})
    model_test = results["model"]["test"]
    if reported and any(abs(model_test[m] - reported[m]) > 1e-6 for m in model_test if m in reported):
        raise RuntimeError(f"the model's own lists score {model_test}, its metrics.json says {reported}: "
                           "the decoding here is not the run's (a stale --cache?)")
    fusions = [n for n in results if n.startswith("fusion")]
    chosen = max(fusions, key=lambda n: results[n]["validation"]["ndcg@10"])
    chosen_content = max((n for n in results if n.startswith("content")), key=lambda n: results[n]["validation"]["ndcg@10"])
    tests = {}
    for baseline in ("model", chosen_content):
        tests[f"{chosen} vs {baseline}"] = {
            m: paired_test(results[chosen]["per_user_test"][m].numpy(), results[baseline]["per_user_test"][m].numpy())
            for m in ("recall@10", "ndcg@10")}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    summary = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
               "date": time.strftime("%Y-%m-%d"), "commit": commit,
               "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), {torch.backends.cpu.get_cpu_capability()}",
               "run": args.run, "run_examples_seen": run_metrics.get("examples_seen"), "run_steps": run_metrics.get("steps"),
               "run_best_step": run_metrics.get("best_step"),
               "num_beams": run.generation.num_beams, "content_depth": args.content_depth,
               "users": {"validation": len(split.valid), "test": len(split.test)},
               "chosen_on_validation": chosen, "chosen_content_on_validation": chosen_content,
               "test": {"model": results["model"]["test"], "content": results[chosen_content]["test"],
                        "fusion": results[chosen]["test"]},
               "paired_tests": tests,
               "settings": {n: {k: v for k, v in r.items() if k != "per_user_test"} for n, r in results.items()},
               "seconds": time.perf_counter() - start}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    per_user = {"user_index": [int(u) for u in split.test.user_index],
                **{m: [float(x) for x in v] for m, v in results[chosen]["per_user_test"].items()}}
    atomic_write_file(out / "per_user_test.json.gz", lambda tmp: Path(tmp).write_bytes(gzip.compress(json.dumps(per_user).encode())),
                      mode=0o644)
    atomic_write_json(out / "metrics.json", summary, mode=0o644)
    print(json.dumps({k: summary[k] for k in ("chosen_on_validation", "test", "paired_tests")}, indent=1))
    return summary


if __name__ == "__main__":
    main()
