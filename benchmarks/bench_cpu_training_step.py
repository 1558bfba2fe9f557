"""What a TIGER-size T5 training step costs on CPU with torch's dropout, genrec's fast dropout, torch.compile, and an
encoder over one position per history item.

    GENREC_DATA_DIR=../shared/data python benchmarks/bench_cpu_training_step.py [--variants eager,fast_dropout,compiled]
    GENREC_DATA_DIR=../shared/data python benchmarks/bench_cpu_training_step.py --profile   # where an eager step's time goes

Copies of one T5 (dropout 0.1, same initial weights) train on the same Beauty batches of 256 prefix examples
(length-bucketed; widths rounded to multiples of 8, 6 shapes, so that the compiled copy compiles few graphs), bf16
autocast, AdamW, one thread. ``eager``: the model as is; ``fast_dropout``: every ``nn.Dropout`` swapped by
:func:`genrec.training.fast_dropout.use_fast_dropout`; ``compiled``: ``torch.compile`` (inductor). The compiled copy
first compiles every shape (``--warmup`` batches, timed separately); then all copies alternate batch by batch and
their CPU seconds (``time.process_time``) are summed, with each copy's mean loss over the last 10 steps (the copies
draw different dropout masks, so losses agree only statistically). ``item_pooled``: the same weights in
:class:`genrec.models.t5.ItemPooledT5` (``model.encoder=item_pooled``), a different model, so its losses differ; ``item_pooled_token_keys``: that model as
first built, its decoder cross-attending every token position (each item's state repeated ``D`` times; the same
function). Writes ``--out`` (JSON). ``--profile``
instead runs ``torch.profiler`` over 8 eager steps (after 2 warm-up steps) and prints the ops by self CPU time.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from transformers import T5ForConditionalGeneration

from genrec.data import leave_one_out_split, load_dataset
from genrec.inputs import build_inputs
from genrec.models.registry import ModelConfig
from genrec.models.t5 import build_t5
from genrec.tokenizer import SIDTable
from genrec.training import LengthBucketBatchSampler
from genrec.training.fast_dropout import use_fast_dropout
from genrec.training.resident import ResidentBatches

VARIANTS = ("eager", "fast_dropout", "compiled", "item_pooled", "item_pooled_token_keys")


def token_keys_forward(model, input_ids, attention_mask, labels):
    """An :class:`~genrec.models.t5.ItemPooledT5` as first built (until 2026-12-05): the decoder cross-attends each item
    state repeated at its ``D`` token positions under the token mask (the same function, ``D`` times the keys)."""
    states = model.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    offset, depth = model.config.genrec_item_offset, model.config.genrec_item_depth
    at_tokens = torch.cat([states[:, :offset], states[:, offset:].repeat_interleave(depth, dim=1)], 1)[:, : input_ids.shape[1]]
    return T5ForConditionalGeneration.forward(model, encoder_outputs=(at_tokens,), attention_mask=attention_mask, labels=labels)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", default="runs/beauty_full/tokenizer")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--warmup", type=int, default=12, help="batches that warm every copy up (and compile its shapes)")
    parser.add_argument("--steps", type=int, default=40, help="timed batches")
    parser.add_argument("--out", default="benchmarks/results/cpu_training_step.json")
    parser.add_argument("--num-user-tokens", type=int, default=2000, help="the recipe's user tokens when first measured")
    parser.add_argument("--profile", action="store_true", help="profile 8 eager steps instead (prints a table, writes nothing)")
    args = parser.parse_args(argv)
    if args.profile:
        args.variants, args.warmup, args.steps = "eager", 2, 8
    variants = args.variants.split(",")
    if unknown := set(variants) - set(VARIANTS):
        parser.error(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    torch.set_num_threads(1)
    dataset = load_dataset("amazon_beauty", None)
    split = leave_one_out_split(dataset, max_history=20)
    cfg = ModelConfig(type="t5", d_model=128, num_layers=4, num_decoder_layers=4, num_heads=6, d_kv=64, d_ff=1024, dropout_rate=0.1)
    inputs = build_inputs(cfg, dataset, split, SIDTable.load(args.tokenizer), num_user_tokens=args.num_user_tokens,
                          max_history=20)
    resident = ResidentBatches(inputs.train_ds, inputs.train_collator, pad_to_multiple_of=8)
    sampler = LengthBucketBatchSampler(inputs.train_ds["length"], 256, seed=0)
    batches = [resident.collate(b) for _, b in zip(range(args.warmup + args.steps), sampler, strict=False)]
    models = {name: copy.deepcopy(inputs.model) for name in variants if not name.startswith("item_pooled")}
    for name in [name for name in variants if name.startswith("item_pooled")]:
        models[name] = build_t5(inputs.space, replace(cfg, encoder="item_pooled").t5())
        models[name].load_state_dict(inputs.model.state_dict())
    forwards = dict(models)
    if "item_pooled_token_keys" in models:
        forwards["item_pooled_token_keys"] = functools.partial(token_keys_forward, models["item_pooled_token_keys"])
    if "fast_dropout" in models:
        use_fast_dropout(models["fast_dropout"])
    if "compiled" in models:
        forwards["compiled"] = torch.compile(models["compiled"], backend="inductor")
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-3) for name, model in models.items()}

    def step(name: str, batch: dict) -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = forwards[name](input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        out.loss.backward()
        optimizers[name].step()
        optimizers[name].zero_grad(set_to_none=True)
        return out.loss.item()

    if args.profile:
        for batch in batches[: args.warmup]:
            step("eager", batch)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
            for batch in batches[args.warmup :]:
                step("eager", batch)
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
        return {}
    warmup_seconds = {}
    for name in variants:
        start = time.perf_counter()
        for batch in batches[: args.warmup]:
            step(name, batch)
        warmup_seconds[name] = time.perf_counter() - start
    seconds = dict.fromkeys(variants, 0.0)
    losses = {name: [] for name in variants}
    for batch in batches[args.warmup :]:
        for name in variants:
            start = time.process_time()
            losses[name].append(step(name, batch))
            seconds[name] += time.process_time() - start
    report = {"command": "python benchmarks/bench_cpu_training_step.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "threads": 1, "timed_steps": len(batches) - args.warmup, "distinct_shapes": len({tuple(b["input_ids"].shape) for b in batches}),
              "warmup_wall_seconds": warmup_seconds, "cpu_seconds": seconds,
              "cost_relative_to_eager": {name: seconds[name] / seconds["eager"] for name in variants} if "eager" in seconds else None,
              "mean_loss_last_10": {name: sum(values[-10:]) / 10 for name, values in losses.items()}}
    print(json.dumps(report, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
