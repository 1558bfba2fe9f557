"""How cost grows with the catalogue (10k, 100k, 1M synthetic items) and with the number of users.

    python benchmarks/bench_scaling.py --sizes 10000 100000 1000000 --out benchmarks/results/scaling.json

Stages, each measured in a fresh subprocess (wall seconds and peak RSS above the process's
baseline after imports, from ``getrusage``):
- ``tokenizer_epoch``: one RQ-VAE training epoch (3 x 256 codes, 384-d inputs, batch 1024), the
  per-epoch catalogue encoding included, k-means initialisation excluded (timed separately);
- ``encode``: encoding the whole catalogue in batches of 8192, plus the collision statistics;
- ``trie``: building the prefix trie of the catalogue's 4-token SIDs;
- ``decode``: constrained beam search (beam 20, top 10) for 256 users with a TIGER-size T5;
- ``eval_users``: decoding time versus number of users (1k, 2k, 4k) at 12k items.
Writes JSON and a PNG plot next to it, and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_embeddings(n: int, d: int = 384, clusters: int = 2000, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, d, generator=g)
    return centres[torch.randint(clusters, (n,), generator=g)] + 0.5 * torch.randn(n, d, generator=g)


def random_sids(n: int, seed: int = 0):
    import torch

    from genrec.tokenizer import add_dedup_codes

    g = torch.Generator().manual_seed(seed)
    return add_dedup_codes(torch.randint(256, (n, 3), generator=g))


def run_stage(stage: str, n: int) -> dict:
    import torch

    from genrec.decoding import PrefixTrie, constrained_beam_search
    from genrec.models import build_t5
    from genrec.tokenizer import RQVAE, tokenizer_metrics
    from genrec.vocab import SIDVocab

    torch.manual_seed(0)
    if stage in ("tokenizer_epoch", "encode"):
        x = synthetic_embeddings(n)
        q = RQVAE(384, seed=0)
        base = rss_mb()
        t = time.perf_counter()
        q._init_codebooks(x)
        init_s = time.perf_counter() - t
        t = time.perf_counter()
        if stage == "tokenizer_epoch":
            q.fit(x, epochs=1, dead_code_reset=False)
            extra = {"kmeans_init_seconds": init_s}
        else:
            codes = q.encode(x)
            tokenizer_metrics(codes, (256, 256, 256), num_random_pairs=100_000)
            extra = {}
        return {"seconds": time.perf_counter() - t, "peak_rss_mb": rss_mb() - base, **extra}
    sids = random_sids(n)
    vocab = SIDVocab((256, 256, 256, int(sids[:, -1].max()) + 1))
    tokens = vocab.codes_to_tokens(sids)
    if stage == "trie":
        base = rss_mb()
        t = time.perf_counter()
        trie = PrefixTrie.from_item_tokens(tokens, vocab)
        return {"seconds": time.perf_counter() - t, "peak_rss_mb": rss_mb() - base, "trie_mb": trie.memory_bytes() / 2**20}
    users = 256 if stage == "decode" else n
    if stage == "eval_users":
        sids = random_sids(12_000)
        vocab = SIDVocab((256, 256, 256, int(sids[:, -1].max()) + 1))
        tokens = vocab.codes_to_tokens(sids)
    trie = PrefixTrie.from_item_tokens(tokens, vocab)
    model = build_t5(vocab).eval()
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(1, 21, (users,), generator=g) * 4 + 1
    width = int(lengths.max())
    ids = torch.zeros(users, width, dtype=torch.long)
    mask = torch.arange(width)[None] < lengths[:, None]
    ids[mask] = tokens[torch.randint(len(tokens), (int(mask.sum()),), generator=g), 0]
    order = torch.argsort(lengths)
    base = rss_mb()
    t = time.perf_counter()
    for chunk in order.split(128):
        w = int(lengths[chunk].max())
        constrained_beam_search(model, ids[chunk, :w], mask[chunk, :w].long(), trie, num_beams=20, top_k=10)
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "seconds_per_user": seconds / users, "peak_rss_mb": rss_mb() - base}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--users", type=int, nargs="+", default=[1000, 2000, 4000])
    p.add_argument("--out", default="benchmarks/results/scaling.json")
    p.add_argument("--stage", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.stage:
        print(json.dumps(run_stage(args.stage, args.n)))
        return
    jobs = [(s, n) for s in ("tokenizer_epoch", "encode", "trie", "decode") for n in args.sizes] + [("eval_users", u) for u in args.users]
    results = []
    for stage, n in jobs:
        out = subprocess.run([sys.executable, __file__, "--stage", stage, "--n", str(n)], capture_output=True, text=True, env=os.environ)
        if out.returncode:
            raise SystemExit(f"{stage} n={n} failed:\n{out.stderr[-3000:]}")
        r = {"stage": stage, "n": n, **json.loads(out.stdout.strip().splitlines()[-1])}
        results.append(r)
        print(json.dumps(r), flush=True)
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print("| stage | n | seconds | peak RSS MB |\n|---|---|---|---|")
    for r in results:
        print(f"| {r['stage']} | {r['n']:,} | {r['seconds']:.2f} | {r['peak_rss_mb']:.0f} |")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for stage in ("tokenizer_epoch", "encode", "trie", "decode"):
        rows = [r for r in results if r["stage"] == stage]
        axes[0].loglog([r["n"] for r in rows], [r["seconds"] for r in rows], "o-", label=stage)
        axes[1].loglog([r["n"] for r in rows], [max(r["peak_rss_mb"], 1) for r in rows], "o-", label=stage)
    rows = [r for r in results if r["stage"] == "eval_users"]
    axes[0].loglog([r["n"] for r in rows], [r["seconds"] for r in rows], "s--", label="eval (x = users, 12k items)")
    axes[0].set(xlabel="catalogue items (or users)", ylabel="wall seconds", title="time")
    axes[1].set(xlabel="catalogue items", ylabel="peak RSS above baseline (MB)", title="memory")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"genrec scaling, {meta['machine']}, {meta['date']}")
    fig.tight_layout()
    fig.savefig(Path(args.out).with_suffix(".png"), dpi=120)


if __name__ == "__main__":
    main()
