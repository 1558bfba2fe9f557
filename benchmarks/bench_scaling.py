"""How cost grows with the catalogue (10k, 100k, 1M synthetic items) and with the number of users.

    python benchmarks/bench_scaling.py --sizes 10000 100000 1000000 --out benchmarks/results/scaling.json

Stages, each measured in a fresh subprocess (wall seconds, and peak RSS above the level at the
stage's start, sampled every 2 ms, so inputs built before the stage are not counted):
- ``tokenizer_epoch``: one RQ-VAE training epoch (3 x 256 codes, 384-d inputs, batch 1024), the
  per-epoch catalogue encoding included, k-means initialisation excluded (reported separately:
  the first ``fit`` call initialises and trains one epoch, a second call trains one more);
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
import subprocess
import sys
import time
from pathlib import Path


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every 2 ms by a thread.

    ``getrusage``'s ``ru_maxrss`` is a lifetime maximum, so it cannot isolate a stage that follows a
    bigger one in the same process; sampling the current RSS can.
    """

    def __enter__(self):
        import threading

        self.base = self.peak = current_rss_mb()
        self._stop = threading.Event()

        def sample():
            while not self._stop.wait(0.002):
                self.peak = max(self.peak, current_rss_mb())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss_mb())
        self.mb = self.peak - self.base


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
        if stage == "tokenizer_epoch":
            t = time.perf_counter()
            q.fit(x, epochs=1, dead_code_reset=False)  # first call: k-means initialisation + one epoch
            first = time.perf_counter() - t
            with PeakRSS() as mem:
                t = time.perf_counter()
                q.fit(x, epochs=1, dead_code_reset=False)  # a later call continues: one epoch alone
                seconds = time.perf_counter() - t
            return {"seconds": seconds, "peak_rss_mb": mem.mb, "kmeans_init_seconds": first - seconds}
        q.fit(x[:20_000], epochs=1)  # encoding cost does not depend on how well the quantiser is trained
        with PeakRSS() as mem:
            t = time.perf_counter()
            codes = q.encode(x, batch_size=8192)
            encode_s = time.perf_counter() - t
            tokenizer_metrics(codes, (256, 256, 256), num_random_pairs=100_000)
            seconds = time.perf_counter() - t
        return {"seconds": seconds, "encode_seconds": encode_s, "peak_rss_mb": mem.mb}
    sids = random_sids(n)
    vocab = SIDVocab((256, 256, 256, int(sids[:, -1].max()) + 1))
    tokens = vocab.codes_to_tokens(sids)
    if stage == "trie":
        with PeakRSS() as mem:
            t = time.perf_counter()
            trie = PrefixTrie.from_item_tokens(tokens, vocab)
            seconds = time.perf_counter() - t
        return {"seconds": seconds, "peak_rss_mb": mem.mb, "trie_mb": trie.memory_bytes() / 2**20}
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
    with PeakRSS() as mem:
        t = time.perf_counter()
        for chunk in order.split(128):
            w = int(lengths[chunk].max())
            constrained_beam_search(model, ids[chunk, :w], mask[chunk, :w].long(), trie, num_beams=20, top_k=10)
        seconds = time.perf_counter() - t
    return {"seconds": seconds, "seconds_per_user": seconds / users, "peak_rss_mb": mem.mb}


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
    print("| stage | n | seconds | per item or user (us) | peak RSS MB | notes |\n|---|---|---|---|---|---|")
    for r in results:
        per = r.get("seconds_per_user", r["seconds"] / r["n"]) * 1e6
        notes = []
        if "kmeans_init_seconds" in r:
            notes.append(f"k-means init {r['kmeans_init_seconds']:.1f} s")
        if "encode_seconds" in r:
            notes.append(f"encode alone {r['encode_seconds']:.2f} s")
        if "trie_mb" in r:
            notes.append(f"trie tensors {r['trie_mb']:.1f} MB")
        if r["stage"] == "decode":
            notes.append("256 users")
        if r["stage"] == "eval_users":
            notes.append("12k items")
        print(f"| {r['stage']} | {r['n']:,} | {r['seconds']:.2f} | {per:.1f} | {r['peak_rss_mb']:.0f} | {', '.join(notes)} |")
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
