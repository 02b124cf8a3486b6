"""What makes a result specific to the machine it ran on: written into run.json and the benchmark.

The same recipe gives bit-identical weights on one machine; on another CPU (AVX2 where this one has
AVX-512/AMX) or thread count, float kernels sum in another order and the figures move a little. Recording
the CPU model, its vector extensions, the thread count and the determinism settings says which.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from typing import Any

import torch

# the instruction-set extensions that pick different matmul/attention kernels
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
                "amx_bf16", "amx_int8", "asimd", "sve", "sve2", "bf16", "i8mm")


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, Any]:
    """CPU model name and which of the kernel-relevant extensions it has (Linux /proc/cpuinfo; else platform)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "cpu model", "hardware") and model in ("", platform.machine(),
                                                                               platform.processor()):
                    model = value.strip()
                elif key in ("flags", "features"):
                    flags.update(value.split())
    except OSError:
        pass
    return {"model": model, "extensions": [f for f in KERNEL_FLAGS if f in flags], "cores": os.cpu_count()}


def cpu_summary() -> str:
    info = cpu_info()
    return f"{info['model']} ({', '.join(info['extensions']) or 'no AVX2'}), {info['cores']} cores"


def machine_info() -> dict[str, Any]:
    """The run.json `machine` entry."""
    info: dict[str, Any] = {"cpu": cpu_info(), "torch_threads": torch.get_num_threads(),
                            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
                            "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = {"name": torch.cuda.get_device_name(), "count": torch.cuda.device_count(),
                       "cuda": torch.version.cuda, "cudnn_deterministic": torch.backends.cudnn.deterministic}
    return info
