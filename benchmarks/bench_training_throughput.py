"""Training throughput: naive padded fp32 batches vs length-bucketed bf16 batches, one process; data-parallel processes.

    python benchmarks/bench_training_throughput.py --steps 30 [--dataset amazon_beauty]
    # data-parallel: the Accelerate/DDP step of genrec.training (1 process, then 2 CPU processes, gloo)
    python benchmarks/bench_training_throughput.py --ddp --steps 30 [--model causal]
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 --num_cpu_threads_per_process 1 \
        benchmarks/bench_training_throughput.py --ddp --steps 30 [--model causal]
    accelerate launch --num_processes 2 benchmarks/bench_training_throughput.py --ddp --steps 30   # 2 GPUs

``--ddp`` times what ``genrec.training.train`` does per optimizer step (prepared model, optimizer and
length-bucketed loader, bf16 autocast, DDP gradient all-reduce) with a fixed *global* batch
(``--batch-size``, split over the processes, so every process count runs the same optimisation),
after ``--warmup`` steps, and prints one table row + a JSON line with global examples/s.

Both variants train a fresh copy of the same TIGER-size T5 (same initial weights, AdamW, batch
256) on the same examples. ``naive``: shuffled batches, every batch padded to 80 tokens, fp32.
``ours``: :class:`genrec.training.LengthBucketBatchSampler` + padding to the batch's longest row +
bf16 autocast. With ``--dataset`` the histories are the real training examples of that dataset
(SIDs random: speed does not depend on which codes); otherwise synthetic histories with Beauty's
length distribution. Reports examples/s, the ratio, and the share of wall time spent waiting for
data (data loading must never stall the step).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from genrec.models import T5RecConfig, build_t5
from genrec.training import LengthBucketBatchSampler
from genrec.vocab import EOS_ID, SIDVocab

PAD_TO = 80


def synthetic_histories(n: int, seed: int = 0) -> list[list[int]]:
    """Histories of 1..20 items with a long tail, about Beauty's mean (~6.6 items)."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.geometric(1 / 6.6, size=n), 1, 20)
    return [rng.integers(0, 12000, size=k).tolist() for k in lengths]


def real_histories(dataset: str, n: int) -> list[list[int]]:
    from genrec.data import leave_one_out_split, load_dataset

    split = leave_one_out_split(load_dataset(dataset))
    return split.train.histories()[:n]


def make_rows(histories, item_tokens: torch.Tensor, seed: int = 0):
    rng = np.random.default_rng(seed)
    rows = []
    for hist in histories:
        ids = item_tokens[hist].flatten().tolist() + [EOS_ID]
        rows.append({"input_ids": ids, "labels": item_tokens[int(rng.integers(len(item_tokens)))].tolist()})
    return rows


def collate(rows, pad_to: int | None = None):
    width = pad_to or max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"][:width])
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": torch.tensor([r["labels"] for r in rows])}


def run(model, loader, steps: int, bf16: bool, warmup: int = 3) -> dict:
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    it = iter(loader)
    examples, wait, start = 0, 0.0, None
    for step in range(warmup + steps):
        if step == warmup:
            examples, wait, start = 0, 0.0, time.perf_counter()
        t0 = time.perf_counter()
        batch = next(it)
        wait += time.perf_counter() - t0
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        examples += batch["input_ids"].shape[0]
    seconds = time.perf_counter() - start
    return {"examples_per_s": examples / seconds, "data_wait_share": wait / seconds, "seconds": seconds}


def causal_rows(rows):
    """Seq2seq rows -> decoder-only rows (prompt + target; loss on the target tokens only)."""
    return [{"input_ids": r["input_ids"] + r["labels"], "labels": [-100] * len(r["input_ids"]) + r["labels"]} for r in rows]


def collate_causal(rows):
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(r["input_ids"]), torch.tensor(r["labels"]), 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def run_ddp(args) -> None:
    """The training step of genrec.training.train under Accelerate, timed over ``args.steps`` optimizer steps."""
    import json

    from accelerate import Accelerator

    from genrec.models import CausalRecConfig, build_causal

    acc = Accelerator(mixed_precision=args.precision)
    n = acc.num_processes
    if args.batch_size % n:
        raise SystemExit(f"--batch-size {args.batch_size} is not divisible by {n} processes")
    per_process = args.batch_size // n
    torch.manual_seed(args.seed)
    vocab = SIDVocab((256, 256, 256, 8), num_user_tokens=0)
    item_tokens = vocab.codes_to_tokens(torch.randint(0, 8, (12000, 4)))
    total = args.batch_size * (args.steps + args.warmup + 2)
    histories = real_histories(args.dataset, total) if args.dataset else synthetic_histories(total, args.seed)
    rows = make_rows(histories, item_tokens, args.seed)
    if args.model == "causal":
        rows, collate_fn, model = causal_rows(rows), collate_causal, build_causal(vocab, CausalRecConfig())
    else:
        collate_fn, model = collate, build_t5(vocab, T5RecConfig())
    sampler = LengthBucketBatchSampler([len(r["input_ids"]) for r in rows], per_process, seed=args.seed)
    loader = DataLoader(rows, batch_sampler=sampler, collate_fn=collate_fn)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, opt, loader = acc.prepare(model, opt, loader)
    model.train()
    it = iter(loader)
    examples = torch.zeros(1, device=acc.device)
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            acc.wait_for_everyone()
            start, examples = time.perf_counter(), torch.zeros(1, device=acc.device)
        batch = next(it)
        loss = model(**batch).loss
        acc.backward(loss)
        acc.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        examples += batch["input_ids"].shape[0]
    acc.wait_for_everyone()
    seconds = time.perf_counter() - start
    examples = int(acc.reduce(examples, reduction="sum").item())
    if acc.is_main_process:
        result = {"model": args.model, "processes": n, "threads_per_process": torch.get_num_threads(),
                  "global_batch": args.batch_size, "precision": args.precision, "steps": args.steps,
                  "examples_per_s": examples / seconds, "device": str(acc.device),
                  "data": f"real {args.dataset}" if args.dataset else "synthetic", "date": time.strftime("%Y-%m-%d")}
        print("| model | processes | threads/process | global batch | precision | examples/s |")
        print("|---|---|---|---|---|---|")
        print(f"| {args.model} | {n} | {result['threads_per_process']} | {args.batch_size} | {args.precision} | {result['examples_per_s']:.1f} |")
        print(json.dumps(result))
    acc.end_training()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=256, help="per step; with --ddp the global batch, split over processes")
    p.add_argument("--dataset", default=None, help="use this dataset's real training histories (needs GENREC_DATA_DIR)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ddp", action="store_true", help="time the Accelerate data-parallel step (under accelerate launch: N processes)")
    p.add_argument("--model", choices=["t5", "causal"], default="t5", help="--ddp: TIGER-size T5 or the ~4.9M decoder-only model")
    p.add_argument("--precision", choices=["no", "bf16"], default="bf16", help="--ddp: Accelerate mixed precision")
    p.add_argument("--warmup", type=int, default=3, help="--ddp: untimed steps first")
    args = p.parse_args()
    if args.ddp:
        run_ddp(args)
        return
    torch.manual_seed(args.seed)
    vocab = SIDVocab((256, 256, 256, 8), num_user_tokens=0)
    item_tokens = vocab.codes_to_tokens(torch.randint(0, 8, (12000, 4)))
    n = args.batch_size * (args.steps + 3)
    histories = real_histories(args.dataset, n * 4) if args.dataset else synthetic_histories(n * 4, args.seed)
    rows = make_rows(histories, item_tokens, args.seed)
    lengths = [len(r["input_ids"]) for r in rows]
    base = build_t5(vocab, T5RecConfig())

    g = torch.Generator().manual_seed(args.seed)
    naive_loader = DataLoader(rows, batch_size=args.batch_size, shuffle=True, generator=g, collate_fn=lambda b: collate(b, PAD_TO))
    sampler = LengthBucketBatchSampler(lengths, args.batch_size, seed=args.seed)
    ours_loader = DataLoader(rows, batch_sampler=sampler, collate_fn=collate)

    results = {
        "naive (padded to 80, fp32)": run(copy.deepcopy(base), naive_loader, args.steps, bf16=False),
        "bucketed, fp32": run(copy.deepcopy(base), ours_loader, args.steps, bf16=False),
        "ours (bucketed + bf16)": run(copy.deepcopy(base), ours_loader, args.steps, bf16=True),
    }
    print(f"# training throughput, {args.steps} steps x batch {args.batch_size}, data={'real ' + args.dataset if args.dataset else 'synthetic'}")
    print(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}")
    print(f"# mean tokens/example {np.mean(lengths):.1f}")
    print("| variant | examples/s | data wait share |")
    print("|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['examples_per_s']:.1f} | {r['data_wait_share']:.1%} |")
    naive = results["naive (padded to 80, fp32)"]["examples_per_s"]
    ours = results["ours (bucketed + bf16)"]["examples_per_s"]
    print(f"ratio ours / naive: {ours / naive:.2f}x (goal >= 3x)")


if __name__ == "__main__":
    main()
