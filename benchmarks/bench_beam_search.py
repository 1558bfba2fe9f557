"""Constrained beam search throughput: ours vs ``model.generate`` vs the unconstrained floor, one process.

    python benchmarks/bench_beam_search.py [--users 2048] [--generate-users 512] [--batch-size 256]

All variants decode the same users, in the same batches (padding trimmed to each batch's longest
history), with the same TIGER-size T5 (random weights, ``build_t5(SIDVocab((256, 256, 256, k)))``)
over a catalogue of 12,000 items with random 4-token SIDs; histories are 1-20 random items.

* ``ours``: :func:`genrec.decoding.constrained_beam_search` (beams share each user's
  cross-attention keys/values);
* ``ours_per_beam_kv``: the same loop with the cross-attention cache copied once per beam
  (``share_cross_attention=False``), to show what sharing buys;
* ``generate``: ``model.generate(num_beams, prefix_allowed_tokens_fn=<nested-dict trie callback>)``;
* ``floor``: our loop with no constraint at all (every code allowed): the model's own cost;
* ``ours_bf16`` (``--with-bf16``): ours under bf16 autocast, compared with the fp32 lists.

Variants run interleaved batch by batch, so load from other processes hits them alike. Checks
that ours returns the same top-k items as ``generate`` on the users ``generate`` decoded
(and scores equal to ``generate``'s ``sequences_scores * D``). By default the script re-executes
itself with the glibc allocator settings of PERF_NOTES.md (``--no-malloc-tuning`` to skip).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch
from bench_trie import random_catalogue  # same directory: random 4-token SIDs with a dedup code

from genrec.decoding import PrefixTrie, constrained_beam_search
from genrec.models import T5RecConfig, build_t5
from genrec.vocab import EOS_ID, SIDVocab

MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736", "MALLOC_TOP_PAD_": "268435456"}


def random_batches(item_tokens: torch.Tensor, num_users: int, batch_size: int, seed: int, sort_by_length: bool):
    """Histories of 1-20 random items -> list of (input_ids, attention_mask), right-padded to each batch's longest."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(num_users):
        history = rng.integers(0, len(item_tokens), size=int(rng.integers(1, 21)))
        rows.append(item_tokens[history].flatten().tolist() + [EOS_ID])
    if sort_by_length:
        rows.sort(key=len)
    batches = []
    for start in range(0, num_users, batch_size):
        chunk = rows[start : start + batch_size]
        width = max(len(r) for r in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        for i, r in enumerate(chunk):
            ids[i, : len(r)] = torch.tensor(r)
        batches.append((ids, (ids != 0).long()))
    return batches


class UnconstrainedTrie:
    """Duck-typed stand-in for :class:`PrefixTrie` that allows every code: the floor of the search loop."""

    def __init__(self, vocab: SIDVocab, device="cpu"):
        self.codebook_sizes, self.level_offsets = vocab.codebook_sizes, vocab.level_offsets
        self.depth, self.num_items, self.device = vocab.depth, 1, torch.device(device)

    def to(self, device):
        return self

    def allowed_mask(self, level, nodes):
        return torch.ones(nodes.numel(), self.codebook_sizes[level], dtype=torch.bool, device=nodes.device)

    def step(self, level, nodes, codes):
        return torch.zeros(torch.broadcast_shapes(nodes.shape, codes.shape), dtype=torch.long, device=nodes.device)

    def leaf_items(self, nodes):
        return torch.zeros_like(nodes)


def dict_trie_callback(item_tokens: torch.Tensor):
    """The usual ``prefix_allowed_tokens_fn``: a nested dict of token ids, walked per row and step."""
    root: dict = {}
    for row in item_tokens.tolist():
        node = root
        for token in row:
            node = node.setdefault(token, {})

    def prefix_allowed_tokens_fn(batch_id: int, sent: torch.Tensor) -> list[int]:
        node = root
        for token in sent[1:].tolist():  # sent[0] is the decoder start token
            node = node.get(token)
            if node is None:
                return [EOS_ID]
        return list(node) or [EOS_ID]

    return prefix_allowed_tokens_fn


def run_interleaved(variants: dict, batch_indices: dict, batches) -> tuple[dict, dict]:
    """Run every variant on batch 0, then every variant on batch 1, ... (rotating which goes first):
    load from other processes on this shared machine hits all variants alike. Variant ``name`` runs
    only the batches in ``batch_indices[name]``. Returns ``{name: {batch index: seconds}}`` and
    ``{name: {batch index: output}}``."""
    seconds = {name: {} for name in variants}
    outputs = {name: {} for name in variants}
    names = list(variants)
    for index, (ids, mask) in enumerate(batches):
        for name in names[index % len(names) :] + names[: index % len(names)]:
            if index not in batch_indices[name]:
                continue
            start = time.perf_counter()
            outputs[name][index] = variants[name](ids, mask)
            seconds[name][index] = time.perf_counter() - start
    return seconds, outputs


def users_per_second(seconds: dict, batches, indices) -> float:
    return sum(len(batches[i][0]) for i in indices) / sum(seconds[i] for i in indices)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=12_000)
    parser.add_argument("--users", type=int, default=2048, help="users decoded by ours / floor (timed)")
    parser.add_argument("--generate-users", type=int, default=512, help="users decoded by generate (timed, compared)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-beams", type=int, default=20)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sort-by-length", action="store_true", help="batch users of similar history length together")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--with-bf16", action="store_true", help="also time ours under bf16 autocast (changes results)")
    parser.add_argument("--skip-per-beam", action="store_true", help="skip the per-beam cross-attention variant")
    parser.add_argument("--no-malloc-tuning", action="store_true", help="do not re-run with PERF_NOTES' glibc settings")
    args = parser.parse_args()

    if not args.no_malloc_tuning and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        sys.exit(subprocess.call([sys.executable, *sys.argv], env={**os.environ, **MALLOC_ENV}))

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    codes, sizes = random_catalogue(args.items, args.seed)
    vocab = SIDVocab(sizes)
    item_tokens = vocab.codes_to_tokens(codes)
    trie = PrefixTrie.from_item_tokens(item_tokens, vocab)
    model = build_t5(vocab, T5RecConfig()).eval()
    batches = random_batches(item_tokens, max(args.users, args.generate_users), args.batch_size, args.seed + 1,
                             args.sort_by_length)
    warmup_batch = random_batches(item_tokens, args.batch_size, args.batch_size, args.seed + 2, False)[0]
    ours_batches = batches[: -(-args.users // args.batch_size)]
    num_generate_batches = -(-args.generate_users // args.batch_size)
    if num_generate_batches > len(ours_batches):
        parser.error("--generate-users must not exceed --users")
    # generate decodes batches spread over the run (with --sort-by-length: short and long histories alike)
    generate_indices = {int((i + 0.5) * len(ours_batches) / num_generate_batches) for i in range(num_generate_batches)}
    beams, top_k, depth = args.num_beams, args.top_k, vocab.depth
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"malloc tuning {'off' if args.no_malloc_tuning else 'on'}")
    print(f"# {trie}")
    print(f"# load average before: {os.getloadavg()[0]:.2f} (other processes on this machine slow every variant)")
    num_users = sum(len(ids) for ids, _ in ours_batches)
    num_generate_users = sum(len(ours_batches[i][0]) for i in generate_indices)
    print(f"# {num_users} users (ours/floor), {num_generate_users} users "
          f"(generate), batch {args.batch_size}, beams {beams}, top-{top_k}, sorted by length: {args.sort_by_length}")

    def ours(ids, mask, share=True):
        return constrained_beam_search(model, ids, mask, trie, num_beams=beams, top_k=top_k, share_cross_attention=share)

    def floor(ids, mask):
        return constrained_beam_search(model, ids, mask, UnconstrainedTrie(vocab), num_beams=beams, top_k=top_k)

    callback = dict_trie_callback(item_tokens)

    def generate(ids, mask):
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, num_beams=beams, num_return_sequences=top_k,
                                 max_new_tokens=depth, do_sample=False, prefix_allowed_tokens_fn=callback,
                                 output_scores=True, return_dict_in_generate=True)
        sids = out.sequences[:, 1:].reshape(len(ids), top_k, depth)
        nodes = trie.walk((sids - torch.tensor(vocab.level_offsets)).reshape(-1, depth))
        return trie.leaf_items(nodes).view(len(ids), top_k), out.sequences_scores.view(len(ids), top_k) * depth

    variants = {"ours": ours, "floor": floor, "generate": generate}
    if not args.skip_per_beam:
        variants["ours_per_beam_kv"] = lambda ids, mask: ours(ids, mask, share=False)
    if args.with_bf16:
        variants["ours_bf16"] = lambda ids, mask: constrained_beam_search(
            model, ids, mask, trie, num_beams=beams, top_k=top_k, autocast_dtype=torch.bfloat16)
    for fn in variants.values():  # warm-up on a full extra batch, untimed: steady state (heap grown, kernels picked)
        fn(*warmup_batch)
    batch_indices = {name: set(range(len(ours_batches))) for name in variants} | {"generate": generate_indices}
    seconds, outputs = run_interleaved(variants, batch_indices, ours_batches)
    results = {name: users_per_second(seconds[name], ours_batches, batch_indices[name]) for name in variants}
    # Ratios to generate on the batches generate decoded (the same users, the same padding).
    ours_on_generate_batches = users_per_second(seconds["ours"], ours_batches, generate_indices)

    same_lists, total, max_score_diff = 0, 0, 0.0
    for index in sorted(generate_indices):
        (our_items, our_scores), (gen_items, gen_scores) = outputs["ours"][index], outputs["generate"][index]
        same_lists += int((our_items == gen_items).all(dim=1).sum())
        total += len(our_items)
        max_score_diff = max(max_score_diff, float((our_scores - gen_scores).abs().max()))

    print(f"# load average after: {os.getloadavg()[0]:.2f}")
    print("| variant | users/s |")
    print("|---|---|")
    for name, users_per_s in results.items():
        print(f"| {name} | {users_per_s:.1f} |")
    print(f"ours / generate = {ours_on_generate_batches / results['generate']:.1f}x on the same {total} users "
          f"(ours {ours_on_generate_batches:.1f} users/s there) (goal >= 8x)")
    print(f"floor / ours = {results['floor'] / results['ours']:.3f} (goal <= 1.15)")
    if "ours_per_beam_kv" in results:
        print(f"ours / ours_per_beam_kv = {results['ours'] / results['ours_per_beam_kv']:.2f}x")
    if "ours_bf16" in results:
        same_bf16 = sum(int((outputs["ours"][i][0] == outputs["ours_bf16"][i][0]).all(dim=1).sum()) for i in outputs["ours"])
        print(f"ours_bf16 / ours = {results['ours_bf16'] / results['ours']:.2f}x; bf16 top-{top_k} lists identical to fp32 "
              f"for {same_bf16}/{num_users} users")
    print(f"agreement with generate: {same_lists}/{total} users with identical ranked top-{top_k} item lists; "
          f"max |score - generate score * {depth}| = {max_score_diff:.2e}")


if __name__ == "__main__":
    main()
