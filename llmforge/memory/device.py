"""How much memory the run may use: the device's free memory, or a limit you set.

`LLMFORGE_MEMORY_LIMIT` (bytes, or with a unit: 12GiB, 800MB) caps it on any device, which is how a test
or a shared machine says "no more than this". On a CPU the free memory is the kernel's MemAvailable and,
in a container, what its cgroup still allows; on a GPU what CUDA reports free on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from llmforge.units import parse_size

LIMIT_VARIABLE = "LLMFORGE_MEMORY_LIMIT"


@dataclass(frozen=True)
class Budget:
    bytes: int | None  # None: unknown (nothing is refused)
    source: str


def _cgroup_room() -> int | None:
    limit, used = Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")
    try:
        cap = limit.read_text().strip()
        return None if cap == "max" else int(cap) - int(used.read_text())
    except (OSError, ValueError):
        return None


def _mem_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _own_resident() -> int:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def budget(device: str) -> Budget:
    """What one device offers the run (for a CPU: the whole machine's, shared by its processes), counting what
    this process already holds: asked before loading or by a worker after it, the answer is the same."""
    if os.environ.get(LIMIT_VARIABLE):
        return Budget(parse_size(os.environ[LIMIT_VARIABLE], LIMIT_VARIABLE), LIMIT_VARIABLE)
    if device == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info()
        return Budget(free + torch.cuda.memory_reserved(), f"free on {torch.cuda.get_device_name()}")
    found = [(room, source) for room, source in ((_mem_available(), "available memory"),
                                                 (_cgroup_room(), "the container's memory limit"))
             if room is not None]
    if not found:
        return Budget(None, "unknown")
    room, source = min(found)
    return Budget(room + _own_resident(), source)
