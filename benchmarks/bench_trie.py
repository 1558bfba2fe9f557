"""PrefixTrie build time, peak memory and lookup speed for random catalogues (12k and 1M items, D = 4).

    python benchmarks/bench_trie.py [--sizes 12000 1000000]

SIDs: three random 256-way codes + a dedup code that makes every SID unique (TIGER's layout).
Peak memory = the highest resident set size sampled (every 1 ms, /proc/self/statm) while building,
minus the resident size just before (the input codes already allocated). Lookup speed: one
``allowed_mask`` + ``step`` per level for 5,120 random existing nodes (batch 256 x 20 beams), with
the automatic layout and with every level forced to CSR. Goal: 1M items in < 10 s and < 200 MB.
"""

from __future__ import annotations

import argparse
import os
import platform
import threading
import time

import torch

from genrec.decoding import PrefixTrie


def random_catalogue(num_items: int, seed: int = 0) -> tuple[torch.Tensor, tuple[int, ...]]:
    """``(N, 4)`` codes: 3 random 256-way codes + a dedup code (rank among equal prefixes); codebook sizes."""
    gen = torch.Generator().manual_seed(seed)
    prefix = torch.randint(0, 256, (num_items, 3), generator=gen)
    key = (prefix[:, 0] * 256 + prefix[:, 1]) * 256 + prefix[:, 2]
    order = torch.sort(key, stable=True).indices
    sorted_key = key[order]
    starts_group = torch.ones(num_items, dtype=torch.bool)
    starts_group[1:] = sorted_key[1:] != sorted_key[:-1]
    positions = torch.arange(num_items)
    group_start = torch.cummax(torch.where(starts_group, positions, 0), dim=0).values
    dedup = torch.empty(num_items, dtype=torch.long)
    dedup[order] = positions - group_start
    return torch.cat([prefix, dedup[:, None]], dim=1), (256, 256, 256, int(dedup.max()) + 1)


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def build_with_peak(codes, sizes, **kwargs) -> tuple[PrefixTrie, float, int]:
    """Build a trie; return it, seconds, and the peak resident-memory increase in bytes."""
    baseline, peak, done = resident_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], resident_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    trie = PrefixTrie.from_codes(codes, sizes, **kwargs)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return trie, seconds, max(peak[0], resident_bytes()) - baseline


def lookup_seconds(trie: PrefixTrie, rows: int = 5120, repeats: int = 20) -> float:
    """Mean seconds of one allowed_mask + step over all levels for ``rows`` random existing nodes."""
    gen = torch.Generator().manual_seed(0)
    nodes = [torch.randint(0, n, (rows,), generator=gen) for n in trie.num_nodes[:-1]]
    start = time.perf_counter()
    for _ in range(repeats):
        for level in range(trie.depth):
            mask = trie.allowed_mask(level, nodes[level])
            trie.step(level, nodes[level], mask.float().argmax(dim=1))
    return (time.perf_counter() - start) / repeats


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[12_000, 1_000_000])
    args = parser.parse_args()
    print(f"# {platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print("| items | build s | peak RSS increase MB | trie MB | layouts | nodes per depth | lookup ms (auto) | lookup ms (all CSR) |")
    print("|---|---|---|---|---|---|---|---|")
    for num_items in args.sizes:
        codes, sizes = random_catalogue(num_items)
        trie, seconds, peak = build_with_peak(codes, sizes)
        csr = PrefixTrie.from_codes(codes, sizes, layout="csr")
        auto_ms, csr_ms = lookup_seconds(trie) * 1e3, lookup_seconds(csr) * 1e3
        print(f"| {num_items:,} | {seconds:.2f} | {peak / 2**20:.0f} | {trie.memory_bytes() / 2**20:.1f} | "
              f"{'/'.join(trie.layouts)} | {trie.num_nodes} | {auto_ms:.2f} | {csr_ms:.2f} |")
        del trie, csr, codes


if __name__ == "__main__":
    main()
