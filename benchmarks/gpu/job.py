"""The prepared GPU job: converged Beauty runs in one call on a lent GPU, results in one folder.

    bash benchmarks/gpu/prepare.sh                 # here, with network: wheels + inputs into .gpu/ (ignored)
    # on the GPU machine (the device tool's run, carry [".gpu"]):
    bash benchmarks/gpu/run.sh full                # or: short (a second try), compare (a second window), tiny (CPU)

For every run: ``recipes/train_genrec.py`` with the converged recipe (``genrec_beauty_full.yaml``) in the
every-target mode with GPU-sized batches and the trainer's GPU paths (resident batches), early stopping on
validation NDCG@10 and a wall-clock cap per run, then full-catalogue ranking of all test users (20 beams).
``full``: the RQ-VAE tokenizer, 3 seeds (the converged-Beauty issue); ``compare``: the RQ-VAE, QuaSID and AdaSID
tokenizers of the cold-start protocol, one seed each (the tokenizer question, paired tests from the per-user
files). Writes into ``--out``: ``results.json`` (per run: tokenizer, seed, test metrics, steps, examples seen,
training time, examples/s, ranking users/s; mean and std over seeds per tokenizer; the device, versions and
command), ``per_user_<tokenizer>_seed<seed>.json`` and ``job.log``. Files stay few (the device tool brings back
at most 8).

``--mode tiny`` runs the same code on a tiny synthetic dataset on CPU in seconds (``tests/test_gpu_job.py``),
so the job cannot rot between GPU windows.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The GPU paths of the trainer: the collated training set resident on the device (batches gathered by index, no
# per-batch Python collation), widths rounded to multiples of 8 tokens (few shapes: what --compile needs).
RESIDENT = ["training.resident_batches=true", "training.pad_to_multiple_of=8"]
GPU_BATCHES = ["training.batch_size=512", "training.learning_rate=0.002", "training.warmup_steps=200",
               "training.eval_every_steps=200", "eval.batch_size=2048"]
COLD = ["cold_item_fraction=0.05", "cold_item_seed=0"]  # the comparison's cold-start protocol (benchmarks/cold_start_recipe.sh)
MODES = {
    # runs (tokenizer name, seed), minutes per run, overrides. "main" is --tokenizer; other names are folders of --compare.
    "full": {"runs": [("main", 42), ("main", 43), ("main", 44)], "minutes": 2.0, "overrides": [*GPU_BATCHES, *RESIDENT]},
    "short": {"runs": [("main", 42)], "minutes": 2.5, "overrides": [*GPU_BATCHES, *RESIDENT]},
    # The tokenizer question (issue 23) at the converged recipe: the cold-start-protocol tokenizers trained here, one seed.
    "compare": {"runs": [("rqvae", 42), ("quasid", 42), ("adasid", 42)], "minutes": 2.0,
                "overrides": [*GPU_BATCHES, *RESIDENT, *COLD]},
    "tiny": {"runs": [("main", 0)], "minutes": 1.0,
             "overrides": ["model.d_model=32", "model.num_layers=1", "model.num_decoder_layers=1", "model.num_heads=2",
                           "model.d_kv=16", "model.d_ff=64", "num_user_tokens=8", "training.batch_size=16", "training.warmup_steps=2",
                           "training.eval_every_steps=5", "training.epochs=3", "eval.num_beams=10", "eval.batch_size=16",
                           "eval.valid_max_users=null", *RESIDENT]},
}
# --compile: torch.compile the training forward as well (CUDA graphs through mode "reduce-overhead"); off by default
# because compiling costs tens of seconds per shape out of a 2-minute run and is not yet measured on a GPU.
COMPILE = ["training.compile=true", "training.compile_mode=reduce-overhead"]


def device_description() -> dict:
    import accelerate
    import torch
    import transformers

    info = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "accelerate": accelerate.__version__, "cuda": torch.cuda.is_available(), "machine": platform.machine()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda_version=torch.version.cuda,
                    bf16=torch.cuda.is_bf16_supported())
    else:
        info.update(cpu_capability=torch.backends.cpu.get_cpu_capability(), threads=torch.get_num_threads())
    return info


def run_one(name: str, seed: int, mode: str, data: str, tokenizer: str, work: Path, out: Path, use_compile: bool = False) -> dict:
    from accelerate.state import AcceleratorState

    from genrec.recipes import train_genrec  # the installed recipe (run.sh installs the package)

    AcceleratorState._reset_state(reset_partial_state=True)  # one process, several runs: each builds its Accelerator
    spec = MODES[mode]
    run_dir = work / f"{name}_seed{seed}"  # checkpoints and models stay out of --out (the tool brings back few files)
    args = ["--config", str(ROOT / "recipes/configs/genrec_beauty_full.yaml"), f"dataset={data}", f"tokenizer_dir={tokenizer}",
            f"output_dir={run_dir}", f"training.seed={seed}", "model.encoder=causal", "model.train_targets=every_item",
            f"training.max_train_minutes={spec['minutes']}", "training.checkpoint_every_minutes=null",
            "training.checkpoint_at_epoch_end=false", *spec["overrides"], *(COMPILE if use_compile else [])]
    start = time.perf_counter()
    metrics = train_genrec.main(args)
    timings = metrics["timings"]
    if (run_dir / "per_user_test.json").is_file():  # for paired tests against other runs
        (out / f"per_user_{name}_seed{seed}.json").write_bytes((run_dir / "per_user_test.json").read_bytes())
    return {"tokenizer": name, "tokenizer_dir": tokenizer, "seed": seed, "test": metrics["test"], "steps": metrics["steps"], "examples_seen": metrics["examples_seen"],
            "early_stopped": metrics["early_stopped"], "best_step": metrics["best_step"],
            "train_seconds": timings["train_seconds"], "examples_per_second": metrics["examples_seen"] / max(timings["train_seconds"], 1e-9),
            "test_users_per_second": timings["test_users"] / max(timings["test_eval_seconds"], 1e-9),
            "wall_seconds": time.perf_counter() - start, "mixed_precision": metrics["mixed_precision"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=sorted(MODES), default="full")
    parser.add_argument("--data", required=True, help="dataset folder (interactions.csv.gz, items.jsonl.gz)")
    parser.add_argument("--tokenizer", required=True, help="SID tokenizer folder trained here (recipes/train_tokenizer.py)")
    parser.add_argument("--compare", default=".gpu/compare", help="--mode compare: a folder of tokenizer folders (rqvae/, ...)")
    parser.add_argument("--out", required=True, help="results.json and the per-user test files")
    parser.add_argument("--work", default="/tmp/genrec_gpu_runs", help="run folders (checkpoints, models)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the training forward (see COMPILE)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"mode": args.mode, "compile": args.compile, "device": device_description(), "date": time.strftime("%Y-%m-%d %H:%M"),
              "command": " ".join(sys.argv), "runs": []}
    for name, seed in MODES[args.mode]["runs"]:
        tokenizer = args.tokenizer if name == "main" else str(Path(args.compare) / name)
        report["runs"].append(run_one(name, seed, args.mode, args.data, tokenizer, Path(args.work), out, args.compile))
        (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")  # partial results survive a timeout
    for name in dict.fromkeys(r["tokenizer"] for r in report["runs"]):  # mean and std over seeds, per tokenizer
        runs = [r for r in report["runs"] if r["tokenizer"] == name]
        report.setdefault("summary", {})[name] = {
            metric: {"mean": statistics.mean(r["test"][metric] for r in runs),
                     "std": statistics.stdev([r["test"][metric] for r in runs]) if len(runs) > 1 else 0.0}
            for metric in ("recall@10", "ndcg@10", "recall@5", "ndcg@5")}
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["summary"], indent=2))
    return report


if __name__ == "__main__":
    main()
