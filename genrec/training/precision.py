"""``mixed_precision: auto``: bf16 autocast only where the hardware computes bf16 natively.

bf16 autocast speeds a training step up only when the processor has bf16 arithmetic: CUDA GPUs
from Ampere on, and CPUs with AVX512_BF16 or AMX. On an AVX2-only CPU the same step ran about 3.4x
*slower* than fp32 (measured on this project's AMD EPYC VMs, see ``shared/PERF_NOTES.md``), so
``auto`` falls back to fp32 there. The choice is logged with its reason.
"""

from __future__ import annotations

import logging
import os
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
