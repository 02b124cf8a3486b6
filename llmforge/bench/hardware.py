"""What the device can do, measured in the same run as the workloads: the ceiling MFU is taken against.

The measured ceiling is the best dense matmul rate over a few square sizes, in the dtype
training uses (bf16 on GPUs that have it, fp32 on CPU), so a figure like "40% MFU" means
40% of what this very device reached on plain matmuls. On known GPUs the datasheet peak
(dense, no sparsity) is reported too.
"""

from __future__ import annotations

import time

import torch

# Dense bf16 tensor-core peaks from the vendors' datasheets (SXM parts), TFLOP/s.
DATASHEET_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0,
                         "RTX 4090": 165.0}


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def training_dtype() -> torch.dtype:
    return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32


def describe() -> str:
    from llmforge.machine import cpu_summary

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__}); host CPU {cpu_summary()}"
    return f"CPU: {cpu_summary()}, {torch.get_num_threads()} torch threads (torch {torch.__version__})"


def datasheet_peak() -> float | None:
    """FLOP/s from the datasheet for this GPU, None on CPU or an unknown GPU."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((tflops * 1e12 for key, tflops in DATASHEET_BF16_TFLOPS.items() if key in name), None)


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def matmul_ceiling(sizes: tuple[int, ...] | None = None, seconds_per_size: float = 0.5) -> float:
    """The best FLOP/s over square matmuls of a few sizes (2 n^3 FLOPs each)."""
    dev, dtype = device(), training_dtype()
    sizes = sizes or ((2048, 4096, 8192) if dev == "cuda" else (256, 512, 1024))
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
        a @ b  # warm-up: kernels picked, memory allocated
        _synchronize()
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds_per_size:
            a @ b
            count += 1
            if dev == "cuda" and count % 10:
                continue
            _synchronize()
        _synchronize()
        best = max(best, 2 * n**3 * count / (time.perf_counter() - started))
    return best
