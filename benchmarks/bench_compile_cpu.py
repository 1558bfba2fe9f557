"""Does ``training.compile`` pay on CPU? Eager vs torch.compile (inductor) training steps of the TIGER-size T5.

    GENREC_DATA_DIR=../shared/data python benchmarks/bench_compile_cpu.py     # needs runs/beauty_full/tokenizer

Beauty prefix batches of 256 (length-bucketed, resident, widths rounded to multiples of 8: 6 shapes), bf16
autocast, dropout 0.1, AdamW, one thread; 12 batches compile every shape first, then 28 batches x 2 rounds run
through both models alternately, timed in CPU seconds of this process. Prints the warm-up time and the totals.
"""

from __future__ import annotations

import copy
import time

import torch

from genrec.data import leave_one_out_split, load_dataset
from genrec.inputs import build_inputs
from genrec.models.registry import ModelConfig
from genrec.tokenizer import SIDTable
from genrec.training import LengthBucketBatchSampler
from genrec.training.resident import ResidentBatches


def main() -> None:
    torch.set_num_threads(1)
    dataset = load_dataset("amazon_beauty", None)
    split = leave_one_out_split(dataset, max_history=20)
    table = SIDTable.load("runs/beauty_full/tokenizer")
    cfg = ModelConfig(type="t5", d_model=128, num_layers=4, num_decoder_layers=4, num_heads=6, d_kv=64, d_ff=1024, dropout_rate=0.1)
    inputs = build_inputs(cfg, dataset, split, table, num_user_tokens=2000, max_history=20)
    resident = ResidentBatches(inputs.train_ds, inputs.train_collator, pad_to_multiple_of=8)
    sampler = LengthBucketBatchSampler(inputs.train_ds["length"], 256, seed=0)
    batches = [resident.collate(b) for _, b in zip(range(60), sampler, strict=False)]
    torch.manual_seed(0)
    models = {"eager": inputs.model, "compiled": copy.deepcopy(inputs.model)}
    forwards = {"eager": models["eager"], "compiled": torch.compile(models["compiled"], backend="inductor")}
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-3) for name, model in models.items()}

    def step(name: str, batch: dict) -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = forwards[name](input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        out.loss.backward()
        optimizers[name].step()
        optimizers[name].zero_grad(set_to_none=True)
        return out.loss.item()

    start = time.time()
    for batch in batches[:12]:  # compiles every shape these batches have
        step("compiled", batch)
    print("compile warm-up", time.time() - start, flush=True)
    for batch in batches[:3]:
        step("eager", batch)
    seconds = {"eager": 0.0, "compiled": 0.0}
    shapes = set()
    for _ in range(2):
        for batch in batches[12:40]:
            shapes.add(tuple(batch["input_ids"].shape))
            for name in ("eager", "compiled"):
                start = time.process_time()
                step(name, batch)
                seconds[name] += time.process_time() - start
    print({k: round(v, 2) for k, v in seconds.items()}, "ratio", seconds["eager"] / seconds["compiled"], "shapes", len(shapes))


if __name__ == "__main__":
    main()
