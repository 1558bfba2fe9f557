"""Beam search (10, 20, 50 beams) vs the exact top-10 on a trained run's test users, in one process.

    python benchmarks/bench_exact_search.py --run runs/beauty_full/genrec_every [--max-users N] \\
        --out benchmarks/results/exact_search.json

For every search: Recall@10 / NDCG@10 over the test users, users/s, prefixes fed to the model per
user (``expanded``: the search's cost in decoder rows), and for the exact search the share of users
whose list was certified (the rest hit the node budget, ``--max-width``); ``--out`` is rewritten every 10
batches (``complete``: false until the last), the users being length-sorted. The searches run batch by
batch, interleaved, so load from other processes hits them alike. Evaluation rows, users and the
model are the run's own (``recipes/evaluate_genrec.py``'s loading).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
import evaluate_genrec  # noqa: E402

from genrec.decoding import PrefixTrie, constrained_beam_search, constrained_beam_search_causal, exact_top_k  # noqa: E402
from genrec.eval.evaluate import left_align  # noqa: E402
from genrec.eval.metrics import per_user_metrics  # noqa: E402
from genrec.training import LengthBucketBatchSampler  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    parser.add_argument("--beams", default="10,20,50")
    parser.add_argument("--max-width", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-users", type=int, default=None, help="the first N test users (default: all)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    loaded = evaluate_genrec.load_run(Path(args.run), args.data_dir, device="cpu")
    model = loaded.model.eval()
    dataset = loaded.dataset("test")
    if args.max_users:
        dataset = dataset.select(range(min(args.max_users, len(dataset))))
    trie = PrefixTrie.from_item_tokens(loaded.space.codes_to_tokens(loaded.sid_table.sids), level_ranges=loaded.space.level_ranges)
    causal = not model.config.is_encoder_decoder
    beam = constrained_beam_search_causal if causal else constrained_beam_search
    loader = DataLoader(dataset, batch_sampler=LengthBucketBatchSampler(dataset["length"], args.batch_size, shuffle=False),
                        collate_fn=loaded.inputs.eval_collator)
    widths = [int(b) for b in args.beams.split(",")]
    names = [f"beam_{w}" for w in widths] + ["exact"]
    ranked = {n: [] for n in names}
    seconds = dict.fromkeys(names, 0.0)
    expanded = dict.fromkeys(names, 0)
    certified, targets = 0, []
    def report_so_far(complete: bool) -> dict:
        target = torch.cat(targets)
        users = len(target)
        report = {"run": args.run, "users": users, "complete": complete, "max_width": args.max_width, "exact_start_width": 20,
                  "searches": {}, "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv),
                  "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, {torch.backends.cpu.get_cpu_capability()}"}
        for name in names:
            metrics = {k: v.mean().item() for k, v in per_user_metrics(torch.cat(ranked[name]), target, (5, 10)).items()}
            report["searches"][name] = {**metrics, "users_per_second": users / seconds[name], "seconds": seconds[name],
                                        "expanded_per_user": expanded[name] / users}
        report["searches"]["exact"]["certified_share"] = certified / users
        exact = torch.cat(ranked["exact"])
        for width in widths:  # how often beam search returns the model's exact top 10 (as a set and in order)
            lists = torch.cat(ranked[f"beam_{width}"])
            report["searches"][f"beam_{width}"]["same_list_as_exact"] = (lists == exact).all(dim=1).float().mean().item()
        if args.out:  # rewritten as batches finish: a long run stopped early still leaves its users so far
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        return report

    for number, batch in enumerate(loader, start=1):
        ids, mask = batch["input_ids"], batch["attention_mask"]
        if causal:
            ids, mask = left_align(ids, mask)
        targets.append(batch["target"])
        for width in widths:
            stats: dict = {}
            start = time.perf_counter()
            items, _ = beam(model, ids, mask, trie, num_beams=width, top_k=10, stats=stats)
            seconds[f"beam_{width}"] += time.perf_counter() - start
            ranked[f"beam_{width}"].append(items)
            expanded[f"beam_{width}"] += int(stats["expanded"].sum())
        start = time.perf_counter()
        result = exact_top_k(model, ids, mask, trie, 10, start_width=20, max_width=args.max_width)
        seconds["exact"] += time.perf_counter() - start
        ranked["exact"].append(result.items)
        expanded["exact"] += int(result.expanded.sum())
        certified += int(result.certified.sum())
        if number % 10 == 0:
            report_so_far(complete=False)
    print(json.dumps(report_so_far(complete=True), indent=2))


if __name__ == "__main__":
    main()
