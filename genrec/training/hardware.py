"""What the machine at hand can do: precision (``mixed_precision: auto``) and torch's thread count.

``mixed_precision: auto``: bf16 autocast only where the hardware computes bf16 natively.

bf16 autocast speeds a training step up only when the processor has bf16 arithmetic: CUDA GPUs
from Ampere on, and CPUs with AVX512_BF16 or AMX. On an AVX2-only CPU the same step ran about 3.4x
*slower* than fp32 (measured on this project's AMD EPYC VMs, see ``shared/PERF_NOTES.md``), so
``auto`` falls back to fp32 there. The choice is logged with its reason.

Threads: torch's intra-op threads spin-wait on each other, so on cores that other jobs also use they
slow down far more than the cores they lose (10-30x measured for a 2-thread T5 step beside one
other CPU-bound process on 2 cores). :func:`choose_num_threads` takes the cores that are free now
(cores minus the cores busy right now, read from ``/proc/stat``), unless ``OMP_NUM_THREADS`` or the config says otherwise;
:class:`CpuShareMonitor` warns when a running job gets far less CPU time than its threads could use.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "no", "bf16", "fp16")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags the kernel reports (empty where there is no ``/proc/cpuinfo``, e.g. macOS)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


def resolve_mixed_precision(setting: str, device: str | None = None, flags: set[str] | None = None) -> str:
    """The Accelerate ``mixed_precision`` value for ``setting`` ("auto" | "no" | "bf16" | "fp16").

    ``auto``: "bf16" on a CUDA device that supports it, or on a CPU whose ``flags`` (default: read
    from ``/proc/cpuinfo``) include AVX512_BF16 or AMX-BF16; "no" (fp32) everywhere else, including
    Apple silicon (bf16 on MPS/ARM CPUs was never measured here). ``device``: "cuda" | "cpu" | None
    (None: CUDA when available, unless ``ACCELERATE_USE_CPU`` is set).
    """
    if setting not in PRECISIONS:
        raise ValueError(f"training.mixed_precision must be one of {PRECISIONS}, got {setting!r}")
    if setting != "auto":
        return setting
    if device is None:
        use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
        device = "cuda" if torch.cuda.is_available() and not use_cpu else "cpu"
    if device == "cuda":
        chosen = "bf16" if torch.cuda.is_bf16_supported() else "no"
        why = "the GPU computes bf16 natively" if chosen == "bf16" else "the GPU has no native bf16"
    else:
        flags = cpu_flags() if flags is None else flags
        native = sorted(set(CPU_BF16_FLAGS) & flags)
        chosen = "bf16" if native else "no"
        capability = torch.backends.cpu.get_cpu_capability()
        why = (f"the CPU has {', '.join(native)} ({capability})" if chosen == "bf16"
               else f"the CPU has no native bf16 ({capability}; bf16 autocast is several times slower than fp32 there)")
    logger.info("mixed_precision=auto -> %s: %s", "fp32" if chosen == "no" else chosen, why)
    return chosen


def choose_num_threads(setting: int | None = None, cpu_count: int | None = None, load: float | None = None) -> tuple[int, str]:
    """``(threads, why)``: ``setting`` when given, else ``$OMP_NUM_THREADS``, else the free cores (>= 1).

    Free cores = ``cpu_count`` (default: the CPUs this process may use) minus the busy cores
    (``load``, default :func:`busy_cores`, else the 1-minute load average), rounded.
    """
    if setting is not None:
        if setting < 1:
            raise ValueError(f"training.num_threads must be >= 1, got {setting}")
        return int(setting), "training.num_threads"
    env = os.environ.get("OMP_NUM_THREADS")
    if env:
        try:
            return max(1, int(env)), "OMP_NUM_THREADS"
        except ValueError:
            raise ValueError(f"OMP_NUM_THREADS must be a whole number, got {env!r}") from None
    if cpu_count is None:
        cpu_count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    how = "busy cores now"
    if load is None:
        load = busy_cores()
        if load is None:  # no /proc/stat: the 1-minute load average (which lags behind a change of load)
            load, how = (os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0), "load average"
    free = max(1, min(cpu_count, round(cpu_count - load)))
    return free, f"{cpu_count} core(s), {how} {load:.1f}: {free} free"


def busy_cores(interval: float = 0.5, stat: str | Path = "/proc/stat") -> float | None:
    """How many CPU cores other work keeps busy, from two reads of ``/proc/stat`` ``interval`` seconds apart
    (None where there is no such file). Unlike the load average it reflects the load of this moment."""

    def read() -> tuple[int, int] | None:
        try:
            fields = Path(stat).read_text().splitlines()[0].split()[1:]
        except (OSError, IndexError):
            return None
        values = [int(v) for v in fields]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values), idle

    first = read()
    if first is None:
        return None
    time.sleep(interval)
    second = read()
    if second is None or second[0] <= first[0]:
        return None
    total, idle = second[0] - first[0], second[1] - first[1]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores * (total - idle) / total


class CpuShareMonitor:
    """Warns (once) when this process gets far less CPU time than its threads could use.

    Call :meth:`update` now and then (e.g. every optimizer step); after ``min_seconds`` of wall time it
    compares the process's CPU time with wall time x threads. Below ``threshold`` the cores are shared
    with other jobs: every step is slower, and more so with several threads each.
    """

    def __init__(self, threads: int, threshold: float = 0.6, min_seconds: float = 30.0):
        self.threads, self.threshold, self.min_seconds = max(1, threads), threshold, min_seconds
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        self.warned = False
        self.share: float | None = None

    def update(self) -> float | None:
        """The CPU share measured so far (None before ``min_seconds``); logs the warning the first time it is low."""
        wall = time.perf_counter() - self.wall0
        if wall < self.min_seconds:
            return None
        self.share = (time.process_time() - self.cpu0) / (wall * self.threads)
        if self.share < self.threshold and not self.warned:
            self.warned = True
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            logger.warning("this process got %.0f%% of the CPU time its %d thread(s) could use (load average %.1f): other jobs "
                           "share the cores, so training runs slower than this machine can; give it free cores or fewer "
                           "threads (OMP_NUM_THREADS / training.num_threads)", 100 * self.share, self.threads, load)
        return self.share
