"""The prepared GPU job: converged Beauty runs in one call on a lent GPU, results in one folder.

    bash benchmarks/gpu/prepare.sh                 # here, with network: wheels + inputs into .gpu/ (ignored)
    # on the GPU machine (the device tool's run, carry [".gpu"]):
    bash benchmarks/gpu/run.sh long                # or: full, short, compare, ablate, tiny (CPU); see MODES
    python benchmarks/gpu/report.py OUT --out benchmarks/results/beauty_converged_gpu/<name>   # here, afterwards

For every run: ``recipes/train_genrec.py`` with the plain T5 recipe (``genrec_beauty_t5.yaml``: the
TIGER T5, one target per prefix, which beat every-target training at equal recipe on CPU) with GPU-sized batches and
the trainer's GPU paths (resident batches), then full-catalogue ranking of all test users (20 beams). The run's length
is set in optimizer steps so that the learning rate can decay at its end (``wsd``: constant, then a cosine decay over
the last fifth; a decay raised test NDCG@10 by 14% on CPU): a short probe first measures this device's steps per
second with the run's recipe, and each run gets ``seconds x rate`` steps (a wall-clock cap of GUARD x seconds stays as a guard).
``long``: one seed as long as a call allows, its run folder brought back (with the weights at the start of its decay:
a later window continues them with ``--init-from .gpu/continue``, see prepare.sh); ``speed``: steps/s at larger batches and
with every batch at one width, eager and compiled (then ``long --compile --steps-per-second R --seconds S``); ``full``: 3 seeds;
``compare``: the RQ-VAE, QuaSID and AdaSID tokenizers of the cold-start protocol, one seed each (paired tests from the
per-user files); ``ablate``: one seed each of the recipe and its variants (``VARIANTS``).
Writes into ``--out``: ``results.json`` (the probe and the sweep; per run: tokenizer, variant, seed, test metrics,
steps, examples seen, training time, examples/s, ranking users/s, the validation curve; mean and std over seeds per
tokenizer; the device, versions and command), ``per_user_<label>.json`` (``run_label``) and ``job.log``. Files stay
few (the device tool brings back at most 8).

``--mode tiny`` runs the same code on a tiny synthetic dataset on CPU in seconds (``tests/test_gpu_job.py``),
so the job cannot rot between GPU windows.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import platform
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from genrec.tokenizer.io import atomic_write_bytes, atomic_write_text

ROOT = Path(__file__).resolve().parents[2]
# The GPU paths of the trainer: the collated training set resident on the device (batches gathered by index, no
# per-batch Python collation), widths rounded to multiples of 8 tokens (few shapes: what --compile needs).
RESIDENT = ["training.resident_batches=true", "training.pad_to_multiple_of=8"]
# On an H200 the small T5 is launch-bound: 16-17 optimizer steps/s at batch 512 and at batch 2048 alike (measured
# 2026-12-04, benchmarks/results/beauty_converged_gpu/), so batch 2048 sees 4x the examples per second.
GPU_BATCHES = ["training.batch_size=2048", "training.learning_rate=0.002", "training.warmup_steps=200",
               "eval.batch_size=2048"]
COLD = ["cold_item_fraction=0.05", "cold_item_seed=0"]  # the comparison's cold-start protocol (benchmarks/cold_start_recipe.sh)
MODES = {
    # runs (tokenizer name, seed[, variant]), training seconds per run, overrides; "sweep": batch sizes whose optimizer
    # steps/s are measured after the probe (throughput only, nothing trained to the end). "main" is --tokenizer; other
    # names are folders of --compare. A window is 15 minutes of device time, the machine's start included, and a call
    # at most 10: a mode fits one call (install ~15 s, probe ~30 s, ~15 s per run for data, validations and the test).
    # The next window: "long" (the recipe as long as a call allows: its validation still rose after 280 s).
    # "keep_model": the run folder (config, best model, curves; no checkpoints) comes back as run_<label>.tar.gz.NN,
    # so that its model can be evaluated further here (beam widths, fusion with a content ranking) without a GPU.
    # Batch 4096 (the later override wins): at a launch-bound 16-17 steps/s twice batch 2048's examples per second, GRID's
    # ~8k-sequence steps halfway; the learning rate stays 2048's 0.002 (0.15 dropout diverged there; GRID: 1e-3 at ~8k).
    "long": {"runs": [("main", 42)], "seconds": 450, "overrides": [*GPU_BATCHES, "training.batch_size=4096", *RESIDENT],
             "keep_model": True},
    # Where a step's time goes, before a long run (~4-5 min): steps/s at batch 4096 and 8192, and, in child processes
    # with a time limit, the recipe with every batch padded to one width, eager and compiled (CUDA graphs). If compiling
    # pays, the next call is `run.sh long --compile --steps-per-second <compiled rate> --seconds <what the call may
    # take, less its one-off seconds and ~1 min>` (no probe: a second compile would cost the run its time).
    "speed": {"runs": [], "seconds": 0, "overrides": [*GPU_BATCHES, *RESIDENT], "sweep": [4096, 8192],
              "rate_probes": ["eager_fixed_width", "compiled_fixed_width"]},
    # Three seeds (the converged-Beauty issue's GPU goal), shorter: 3 x 140 s.
    "full": {"runs": [("main", 42), ("main", 43), ("main", 44)], "seconds": 140, "overrides": [*GPU_BATCHES, *RESIDENT]},
    "short": {"runs": [("main", 42)], "seconds": 280, "overrides": [*GPU_BATCHES, *RESIDENT]},
    # The tokenizer question (issue 23) at the converged recipe: the cold-start-protocol tokenizers trained here, one seed.
    "compare": {"runs": [("rqvae", 42), ("quasid", 42), ("adasid", 42)], "seconds": 130,
                "overrides": [*GPU_BATCHES, *RESIDENT, *COLD]},
    # The choices the anchors disagree on, one seed per variant at equal steps, paired tests from the per-user files.
    # Measured 2026-12-04 (benchmarks/results/beauty_converged_gpu/ablate/): the user token (dropped since) and dropout
    # 0.15 at lr 0.002 (diverged). Left: the dedup code in the target or not, and the item-pooled encoder (equal to the
    # T5 at 256k examples on CPU, 3.4x cheaper steps there; on a launch-bound GPU it can only pay at larger batches).
    # Dropout 0.15 at GRID's lr 0.001 ("dropout0.15_lr0.001") waits for a window with time to spare.
    "ablate": {"runs": [("main", 42), ("main", 42, "no_dedup_loss"), ("main", 42, "item_pooled")],
               "seconds": 130, "overrides": [*GPU_BATCHES, *RESIDENT]},
    # (its validations, of every user, take longer than its 4 s of steps: a wide guard lets its schedule finish)
    "tiny": {"runs": [("main", 0)], "seconds": 4, "guard": 10, "sweep": [32], "keep_model": True, "rate_probes": ["eager_fixed_width"],
             "overrides": ["model.d_model=32", "model.num_layers=1", "model.num_decoder_layers=1", "model.num_heads=2",
                           "model.d_kv=16", "model.d_ff=64", "num_user_tokens=8", "training.batch_size=16", "training.warmup_steps=2",
                           "eval.num_beams=10", "eval.batch_size=16", "eval.valid_max_users=null",
                           *RESIDENT]},
}
# A run's variant: overrides on top of its mode's ("base" = the recipe as the mode runs it).
VARIANTS = {"base": [], "user_token": ["num_user_tokens=2000"], "dropout0.15": ["model.dropout_rate=0.15"],
            "no_dedup_loss": ["dedup_loss=false"],
            "dropout0.15_lr0.001": ["model.dropout_rate=0.15", "training.learning_rate=0.001"],
            "item_pooled": ["model.encoder=item_pooled"]}
# The probe's optimizer steps; its rate is measured between its validations at steps PROBE_STEPS / 3 and PROBE_STEPS,
# past the first steps' one-off costs (CUDA context, kernel selection, compiling).
PROBE_STEPS = 300
SWEEP_STEPS = 100  # a sweep point's steps (the CUDA context is up by then; each new shape still selects its kernels)
DECAY_FRACTION = 0.2  # wsd: the last fifth of a run's steps decays the learning rate to 0
# The wall-clock cap of a run, x its seconds: a probe slower than the run (12.5 vs 16-17 steps/s, 2026-12-04) must not
# make a run outlast its call, which would lose its results.
GUARD = 1.2
PART_BYTES = 15 * 2**20  # the device tool brings back files of at most 16 MiB (a fp32 TIGER-size T5 is ~18 MB)
VALIDATIONS = 5  # validations per run (fixed user sample): the learning curve's points
# --compile: torch.compile the training forward as well (CUDA graphs through mode "reduce-overhead"), every batch
# padded to the full width (one shape, and the epoch's last batch: compiling costs tens of seconds per shape; a GPU
# this small a model leaves launch-bound does not mind the padding). Off by default: "speed" measures it first.
COMPILE = ["training.compile=true", "training.compile_mode=reduce-overhead", "training.pad_to_multiple_of=1000"]
# Rate probes (mode "speed"): the recipe with these overrides, in a child process stopped after RATE_PROBE_TIMEOUT s
# (a compile that hangs or fails must not cost the window its next call).
RATE_PROBES = {"eager_fixed_width": ["training.pad_to_multiple_of=1000"], "compiled_fixed_width": COMPILE}
RATE_PROBE_TIMEOUT = 200
# A compiled run compiles again before its first step (its rate, given with --steps-per-second, excludes that): its
# wall-clock guard allows this much more. Keep it inside the call when choosing --seconds.
COMPILE_SECONDS = 150


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


def train_args(seed: int, mode: str, data: str, tokenizer: str, run_dir: Path, use_compile: bool) -> list[str]:
    """The recipe's arguments shared by the probe and the runs."""
    return ["--config", str(ROOT / "recipes/configs/genrec_beauty_t5.yaml"), f"dataset={data}", f"tokenizer_dir={tokenizer}",
            f"output_dir={run_dir}", f"training.seed={seed}", "training.checkpoint_every_minutes=null",
            "training.checkpoint_at_epoch_end=false", "training.early_stopping_patience=null", "eval.final_validation=false",
            *MODES[mode]["overrides"], *(COMPILE if use_compile else [])]


def probe(mode: str, data: str, tokenizer: str, work: Path, use_compile: bool = False, steps: int = PROBE_STEPS,
          overrides: tuple[str, ...] = ()) -> dict:
    """This device's optimizer steps per second with the runs' recipe (and ``overrides``): ``steps`` steps, 64
    validation and 64 test users."""
    from accelerate.state import AcceleratorState

    from genrec.recipes import train_genrec

    AcceleratorState._reset_state(reset_partial_state=True)
    start = time.perf_counter()
    run_dir = work / "probe"
    metrics = train_genrec.main([*train_args(0, mode, data, tokenizer, run_dir, use_compile), *probe_args(steps), *overrides])
    seconds = metrics["timings"]["train_seconds"]
    return {"steps": metrics["steps"], "examples_seen": metrics["examples_seen"], "train_seconds": seconds,
            "steps_per_second": steady_rate(run_dir / "learning_curve.csv", metrics["steps"] / max(seconds, 1e-9)),
            "overall_steps_per_second": metrics["steps"] / max(seconds, 1e-9),
            "examples_per_second": metrics["examples_seen"] / max(seconds, 1e-9), "wall_seconds": time.perf_counter() - start}


def probe_args(steps: int) -> list[str]:
    return [f"training.max_steps={steps}", f"training.eval_every_steps={max(1, steps // 3)}", "eval.valid_max_users=64",
            "eval.test_max_users=64"]


def steady_rate(curve_csv: Path, fallback: float) -> float:
    """Steps per second between the first and the last validation of a probe's learning curve (``fallback`` when it
    has fewer than two): the steps before the first validation carry the one-off costs."""
    rows = list(csv.DictReader(curve_csv.open())) if curve_csv.is_file() else []
    if len(rows) < 2 or float(rows[-1]["train_seconds"]) <= float(rows[0]["train_seconds"]):
        return fallback
    return (int(rows[-1]["step"]) - int(rows[0]["step"])) / (float(rows[-1]["train_seconds"]) - float(rows[0]["train_seconds"]))


def rate_probe(name: str, mode: str, data: str, tokenizer: str, work: Path, timeout: float = RATE_PROBE_TIMEOUT) -> dict:
    """The recipe's steady steps/s with RATE_PROBES[name], measured in a child process given ``timeout`` seconds."""
    run_dir = work / f"rate_{name}"
    command = [sys.executable, "-m", "genrec.recipes.train_genrec",
               *train_args(0, mode, data, tokenizer, run_dir, False), *probe_args(PROBE_STEPS), *RATE_PROBES[name]]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"overrides": RATE_PROBES[name], "error": f"stopped after {timeout:.0f} s"}
    if done.returncode != 0:
        return {"overrides": RATE_PROBES[name], "error": f"exit {done.returncode}: {done.stderr[-1500:]}"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    seconds = metrics["timings"]["train_seconds"]
    rate = steady_rate(run_dir / "learning_curve.csv", float("nan"))
    first = next(csv.DictReader((run_dir / "learning_curve.csv").open()))
    return {"overrides": RATE_PROBES[name], "steps": metrics["steps"], "train_seconds": seconds, "steps_per_second": rate,
            "overall_steps_per_second": metrics["steps"] / max(seconds, 1e-9),
            # before the first validation, what the steps at the steady rate do not explain: compiling, warm-up
            "one_off_seconds": float(first["train_seconds"]) - int(first["step"]) / rate, "wall_seconds": time.perf_counter() - start}


def schedule(steps_per_second: float, seconds: float, guard: float = GUARD, extra_seconds: float = 0.0,
             keep_pre_decay: bool = False) -> list[str]:
    """A run of ``seconds`` at the probed rate, in optimizer steps: wsd decay over its last DECAY_FRACTION; stopped
    after ``guard x seconds + extra_seconds`` of training whatever the step. ``keep_pre_decay``: a checkpoint at the
    start of the decay (the weights a later window continues from), kept with all the others (with checkpoints on,
    the trainer also saves one after each validation; each ~55 MB there)."""
    steps = max(10, int(steps_per_second * seconds))
    decay = max(1, int(steps * DECAY_FRACTION))
    plan = ["training.lr_scheduler=wsd", f"training.max_steps={steps}", f"training.decay_steps={decay}",
            f"training.eval_every_steps={max(1, steps // VALIDATIONS)}", f"training.max_train_minutes={(guard * seconds + extra_seconds) / 60:.3f}"]
    if keep_pre_decay:
        plan += [f"training.checkpoint_every_steps={steps - decay}", f"training.keep_checkpoints={VALIDATIONS + 3}"]
    return plan


def run_label(name: str, seed: int, variant: str = "base") -> str:
    """A run's name in file names: ``per_user_<label>.json`` in --out, ``<label>/`` in --work."""
    return f"{name}_seed{seed}" if variant == "base" else f"{name}_{variant}_seed{seed}"


def run_one(name: str, seed: int, mode: str, data: str, tokenizer: str, work: Path, out: Path, steps_per_second: float,
            use_compile: bool = False, variant: str = "base", seconds: float | None = None,
            init_from: Path | None = None) -> dict:
    from accelerate.state import AcceleratorState

    from genrec.recipes import train_genrec  # the installed recipe (run.sh installs the package)

    AcceleratorState._reset_state(reset_partial_state=True)  # one process, several runs: each builds its Accelerator
    label = run_label(name, seed, variant)
    run_dir = work / label  # checkpoints and models stay out of --out (the tool brings back few files)
    start = time.perf_counter()
    plan = schedule(steps_per_second, seconds or MODES[mode]["seconds"], MODES[mode].get("guard", GUARD),
                    COMPILE_SECONDS if use_compile else 0.0, keep_pre_decay=MODES[mode].get("keep_model", False))
    metrics = train_genrec.main([*(["--init-from", str(init_from)] if init_from else []),
                                 *train_args(seed, mode, data, tokenizer, run_dir, use_compile), *plan, *VARIANTS[variant]])
    timings = metrics["timings"]
    if (run_dir / "per_user_test.json").is_file():  # for paired tests against other runs
        atomic_write_bytes(out / f"per_user_{label}.json", (run_dir / "per_user_test.json").read_bytes(), mode=0o644)
    curve = run_dir / "learning_curve.csv"
    return {"tokenizer": name, "variant": variant, "overrides": VARIANTS[variant], "tokenizer_dir": tokenizer, "seed": seed,
            "test": metrics["test"], "steps": metrics["steps"],
            "examples_seen": metrics["examples_seen"], "early_stopped": metrics["early_stopped"], "best_step": metrics["best_step"],
            "train_seconds": timings["train_seconds"], "examples_per_second": metrics["examples_seen"] / max(timings["train_seconds"], 1e-9),
            "test_users_per_second": timings["test_users"] / max(timings["test_eval_seconds"], 1e-9),
            "wall_seconds": time.perf_counter() - start, "mixed_precision": metrics["mixed_precision"],
            "learning_curve_csv": curve.read_text() if curve.is_file() else None, "init_from": init_from_record(init_from)}


def init_from_record(init_from: Path | None) -> dict | None:
    """Where a continued run's weights came from, and how far they had been trained (a packed ``pre_decay/``)."""
    if init_from is None:
        return None
    state = init_from / "trainer_state.json"
    record = {"path": str(init_from)}
    if state.is_file():
        saved = json.loads(state.read_text())
        record.update(steps=saved.get("steps"), examples_seen=saved.get("examples_seen"),
                      learning_curve=saved.get("learning_curve"))
    return record


def pre_decay_step(run_dir: Path) -> int | None:
    """The step at which a wsd run's decay starts (its config's max_steps - decay_steps), if it has one."""
    config = run_dir / "config.json"
    training = json.loads(config.read_text())["training"] if config.is_file() else {}
    if training.get("lr_scheduler") != "wsd" or not training.get("max_steps") or not training.get("decay_steps"):
        return None
    return training["max_steps"] - training["decay_steps"]


def pack_run(run_dir: Path, out: Path, label: str, tokenizer: Path | None = None) -> list[Path]:
    """``run_dir`` without its checkpoints as ``out/run_<label>.tar.gz.00``, ``.01``, ... (parts of at most PART_BYTES),
    and, where the run kept one (``pre_decay_step``), the model of its checkpoint at the start of the learning-rate decay
    as ``<label>/pre_decay/`` (model.safetensors, the model's config.json, trainer_state.json): the weights a later
    window continues from (``--init-from``; the optimizer state, three times the model, stays behind), and the SID
    tokenizer the run was trained on as ``<label>/tokenizer/`` (a continuation must use the same SIDs).

    Here: ``cat run_<label>.tar.gz.* | tar xz`` gives ``<label>/`` (config.json, best/, pre_decay/, ...), which
    ``recipes/evaluate_genrec.py --run`` reads (its dataset and tokenizer paths are the job's ``.gpu/...``, present
    here after ``prepare.sh``)."""
    def no_checkpoints(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        return None if "checkpoints" in Path(info.name).parts[1:2] else info

    pre_decay = run_dir / "checkpoints" / f"step-{pre_decay_step(run_dir):08d}" if pre_decay_step(run_dir) else None
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(run_dir, arcname=label, filter=no_checkpoints)
        if tokenizer is not None:
            tar.add(tokenizer, arcname=f"{label}/tokenizer")
        if pre_decay is not None and (pre_decay / "model.safetensors").is_file():
            for source, name in ((pre_decay / "model.safetensors", "model.safetensors"),
                                 (run_dir / "best" / "config.json", "config.json"),
                                 (run_dir / "best" / "generation_config.json", "generation_config.json"),
                                 (pre_decay / "trainer_state.json", "trainer_state.json")):
                if source.is_file():
                    tar.add(source, arcname=f"{label}/pre_decay/{name}")
    data = buffer.getvalue()
    parts = []
    for number, offset in enumerate(range(0, len(data), PART_BYTES)):
        parts.append(out / f"run_{label}.tar.gz.{number:02d}")
        atomic_write_bytes(parts[-1], data[offset:offset + PART_BYTES], mode=0o644)
    return parts


def save_report(out: Path, report: dict) -> None:
    """``out/results.json``, written atomically (a call cut off mid-write leaves the previous version)."""
    atomic_write_text(out / "results.json", json.dumps(report, indent=2) + "\n", mode=0o644)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=sorted(MODES), default="full")
    parser.add_argument("--data", required=True, help="dataset folder (interactions.csv.gz, items.jsonl.gz)")
    parser.add_argument("--tokenizer", required=True, help="SID tokenizer folder trained here (recipes/train_tokenizer.py)")
    parser.add_argument("--compare", default=".gpu/compare", help="--mode compare: a folder of tokenizer folders (rqvae/, ...)")
    parser.add_argument("--out", required=True, help="results.json and the per-user test files")
    parser.add_argument("--work", default="/tmp/genrec_gpu_runs", help="run folders (checkpoints, models)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the training forward (see COMPILE)")
    parser.add_argument("--steps-per-second", type=float, help="the device's rate for the runs' schedule, measured before "
                        "(mode speed's rate_probes): no probe")
    parser.add_argument("--seconds", type=float, help="training seconds per run (default: the mode's)")
    parser.add_argument("--init-from", type=Path, help="a model folder the runs start from (a packed run's pre_decay/, "
                        "carried as .gpu/continue/): a fresh optimizer and schedule on those weights")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"mode": args.mode, "compile": args.compile, "device": device_description(), "date": time.strftime("%Y-%m-%d %H:%M"),
              "command": " ".join(sys.argv), "runs": []}
    runs = [(run[0], run[1], run[2] if len(run) > 2 else "base") for run in MODES[args.mode]["runs"]]
    tokenizers = {name: args.tokenizer if name == "main" else str(Path(args.compare) / name) for name, _, _ in runs}
    probe_tokenizer = next(iter(tokenizers.values()), args.tokenizer)
    if args.steps_per_second:
        report["probe"] = {"steps_per_second": args.steps_per_second, "given": True}
    else:
        report["probe"] = probe(args.mode, args.data, probe_tokenizer, Path(args.work), args.compile)
        print("probe:", report["probe"], flush=True)
    seconds = args.seconds or MODES[args.mode]["seconds"]
    for batch_size in MODES[args.mode].get("sweep", []):  # throughput at other batch sizes (same learning rate)
        point = probe(args.mode, args.data, probe_tokenizer, Path(args.work), args.compile, SWEEP_STEPS,
                      (f"training.batch_size={batch_size}",))
        report.setdefault("batch_sweep", {})[batch_size] = point
        print(f"batch {batch_size}:", point, flush=True)
    for name in MODES[args.mode].get("rate_probes", []):
        report.setdefault("rate_probes", {})[name] = rate_probe(name, args.mode, args.data, probe_tokenizer, Path(args.work))
        print(f"{name}:", report["rate_probes"][name], flush=True)
        save_report(out, report)
    for name, seed, variant in runs:
        report["runs"].append(run_one(name, seed, args.mode, args.data, tokenizers[name], Path(args.work), out,
                                      report["probe"]["steps_per_second"], args.compile, variant, seconds, args.init_from))
        if MODES[args.mode].get("keep_model"):
            label = run_label(name, seed, variant)
            report["runs"][-1]["packed_run"] = [p.name for p in pack_run(Path(args.work) / label, out, label, Path(tokenizers[name]))]
        save_report(out, report)  # partial results survive a timeout
    # mean and std over seeds, per tokenizer (and variant, where not the base)
    report["summary"] = {}
    keys = {id(r): r["tokenizer"] if r["variant"] == "base" else f"{r['tokenizer']}/{r['variant']}" for r in report["runs"]}
    for key in dict.fromkeys(keys.values()):
        runs = [r for r in report["runs"] if keys[id(r)] == key]
        report["summary"][key] = {
            metric: {"mean": statistics.mean(r["test"][metric] for r in runs),
                     "std": statistics.stdev([r["test"][metric] for r in runs]) if len(runs) > 1 else 0.0}
            for metric in ("recall@10", "ndcg@10", "recall@5", "ndcg@5")}
    save_report(out, report)
    print(json.dumps(report["summary"], indent=2))
    return report


if __name__ == "__main__":
    main()
