"""torch's dropout vs :class:`genrec.training.fast_dropout.FastDropout` in whole training steps of the TIGER-size T5.

    GENREC_DATA_DIR=../shared/data python benchmarks/bench_fast_dropout.py     # needs runs/beauty_full/tokenizer

Two copies of the same T5 (dropout 0.1; one with every ``nn.Dropout`` swapped by ``use_fast_dropout``) train on
the same 40 Beauty batches of 256 prefix examples (length-bucketed), bf16 autocast, AdamW, one thread, alternating
batch by batch; CPU seconds of this process over the last 38 steps, and the mean training loss of the last 10
steps of each (the two draw different masks, so losses agree only statistically). Writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

from genrec.data import leave_one_out_split, load_dataset
from genrec.inputs import build_inputs
from genrec.models.registry import ModelConfig
from genrec.tokenizer import SIDTable
from genrec.training import LengthBucketBatchSampler
from genrec.training.fast_dropout import use_fast_dropout
from genrec.training.resident import ResidentBatches


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", default="runs/beauty_full/tokenizer")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--out", default="benchmarks/results/fast_dropout.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    dataset = load_dataset("amazon_beauty", None)
    split = leave_one_out_split(dataset, max_history=20)
    cfg = ModelConfig(type="t5", d_model=128, num_layers=4, num_decoder_layers=4, num_heads=6, d_kv=64, d_ff=1024, dropout_rate=0.1)
    inputs = build_inputs(cfg, dataset, split, SIDTable.load(args.tokenizer), num_user_tokens=2000, max_history=20)
    resident = ResidentBatches(inputs.train_ds, inputs.train_collator)
    sampler = LengthBucketBatchSampler(inputs.train_ds["length"], 256, seed=0)
    batches = [resident.collate(b) for _, b in zip(range(args.steps), sampler, strict=False)]
    models = {"torch_dropout": inputs.model, "fast_dropout": copy.deepcopy(inputs.model)}
    use_fast_dropout(models["fast_dropout"])
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-3) for name, model in models.items()}

    def step(name: str, batch: dict) -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = models[name](input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        out.loss.backward()
        optimizers[name].step()
        optimizers[name].zero_grad(set_to_none=True)
        return out.loss.item()

    seconds = dict.fromkeys(models, 0.0)
    losses = {name: [] for name in models}
    for i, batch in enumerate(batches):
        for name in models:
            start = time.process_time()
            losses[name].append(step(name, batch))
            if i >= 2:  # the first steps warm the allocator up
                seconds[name] += time.process_time() - start
    report = {"command": "python benchmarks/bench_fast_dropout.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "threads": 1, "timed_steps": len(batches) - 2, "cpu_seconds": seconds,
              "speedup": seconds["torch_dropout"] / seconds["fast_dropout"],
              "mean_loss_last_10": {name: sum(values[-10:]) / 10 for name, values in losses.items()}}
    print(json.dumps(report, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
