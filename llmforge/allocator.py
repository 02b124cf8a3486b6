"""Give freed tensor memory back to the system: a fixed mmap threshold for glibc's malloc.

PyTorch's CPU tensors come from malloc. glibc serves a large request with its own mapping, returned to the
system when freed, but after each such free it raises its threshold (up to 32 MiB), so activations and
gradients of a few MiB end up in the heap, where a freed block stays resident for the next request. A
training step frees and reallocates hundreds of them, and the process keeps gigabytes more than it uses;
under glibc's default even gradient checkpointing hardly lowers the resident peak. A fixed 1 MiB threshold
trades speed for that memory (the size ladder, docs/performance.md#real-sizes, 2-core Xeon): LoRA SFT of
the 0.5B shape at 2 x 512 tokens with checkpointing peaks at 3.7 GiB in 18.5 s a step, against 5.5 GiB in
13.2 s with glibc's default (4 MiB: 4.6 GiB, 14.7 s; 16 MiB: 4.6 GiB, 14.8 s); full SFT 9.8 GiB in 18.8 s
against 10.8 GiB in 17.2 s; at the 135M shape the speed is the same within noise. The memory plan assumes
this setting. Set once at start; LLMFORGE_MALLOC_MMAP_THRESHOLD (bytes) changes it, 0 keeps glibc's default
(faster where memory is ample).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

VARIABLE = "LLMFORGE_MALLOC_MMAP_THRESHOLD"
DEFAULT_THRESHOLD = 1 << 20
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


def release_freed_memory() -> int | None:
    """Set the threshold (and a trim threshold of twice it) where the C library is glibc; the threshold set,
    or None where nothing was changed."""
    threshold = int(os.environ.get(VARIABLE, DEFAULT_THRESHOLD) or 0)
    if threshold <= 0:
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to set
        return None
    if not mallopt(M_MMAP_THRESHOLD, threshold):
        return None
    mallopt(M_TRIM_THRESHOLD, 2 * threshold)
    return threshold
