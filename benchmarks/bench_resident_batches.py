"""What building a batch costs: the DataLoader + collator path vs resident batches (gathered by index), on Beauty.

    GENREC_DATA_DIR=../shared/data python benchmarks/bench_resident_batches.py --tokenizer runs/beauty_full/tokenizer

No model runs: this is the per-step overhead that resident batches remove, which on a GPU competes with a
TIGER-size step of a few milliseconds. Both paths draw the same batches (the trainer's sampler, seed 0),
interleaved batch by batch in one process, for the prefix examples (plain T5, batch 256 and 1,024) and the
every-target windows (batch 64 and 512). Prints a table and writes ``--out`` (JSON).
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

from genrec.data import leave_one_out_split, load_dataset
from genrec.inputs import build_inputs
from genrec.models.registry import ModelConfig
from genrec.tokenizer import SIDTable
from genrec.training import LengthBucketBatchSampler
from genrec.training.resident import ResidentBatches


def time_batches(loader, batches: int) -> float:
    """Seconds per batch over the first ``batches`` batches of ``loader``."""
    start = time.perf_counter()
    for i, _ in enumerate(loader):
        if i + 1 == batches:
            break
    return (time.perf_counter() - start) / batches


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--dataset", default="amazon_beauty")
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/resident_batches.json")
    parser.add_argument("--data-dir", help="folder holding the dataset (default: $GENREC_DATA_DIR)")
    args = parser.parse_args(argv)
    dataset = load_dataset(args.dataset, args.data_dir)
    split = leave_one_out_split(dataset, max_history=20)
    table = SIDTable.load(args.tokenizer)
    report = {"command": "python benchmarks/bench_resident_batches.py " + " ".join(sys.argv[1:] if argv is None else argv), "date": time.strftime("%Y-%m-%d"),
              "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(), "rows": {}}
    settings = {"prefix examples (plain T5)": ({"type": "t5"}, (256, 1024)),
                "every-target windows": ({"type": "t5", "encoder": "causal", "train_targets": "every_item"}, (64, 512))}
    for label, (model, sizes) in settings.items():
        inputs = build_inputs(ModelConfig(**model), dataset, split, table, num_user_tokens=2000, max_history=20, with_model=False)
        start = time.perf_counter()
        resident = ResidentBatches(inputs.train_ds, inputs.train_collator)
        build_seconds = time.perf_counter() - start
        for size in sizes:
            sampler = LengthBucketBatchSampler(inputs.train_ds["length"], size, seed=0)
            plain = DataLoader(inputs.train_ds, batch_sampler=sampler, collate_fn=inputs.train_collator)
            gathered = DataLoader(resident, batch_sampler=sampler, collate_fn=resident.collate)
            times = {"collator": [], "resident": []}
            for _ in range(args.repeats):  # interleaved: a busy core slows both alike
                times["collator"].append(time_batches(plain, args.batches))
                times["resident"].append(time_batches(gathered, args.batches))
            row = {name: 1000 * min(values) for name, values in times.items()}  # ms per batch, best of the repeats
            row.update(rows=len(resident), build_seconds=build_seconds, speedup=row["collator"] / row["resident"])
            report["rows"][f"{label}, batch {size}"] = row
            print(f"{label:28s} batch {size:5d}: collator {row['collator']:7.2f} ms, resident {row['resident']:6.2f} ms "
                  f"({row['speedup']:.0f}x); resident set built once in {build_seconds:.1f} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
