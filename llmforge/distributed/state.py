"""The process's place in a job, created one way everywhere.

accelerate's `PartialState` is a singleton whose first construction decides the
backend; on CPU it only joins a multi-process job when built with `cpu=True`. Every
part of llmforge asks here, so the first caller cannot get it wrong.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

import torch
from accelerate import PartialState

from llmforge.distributed import launched_externally

PR_SET_PDEATHSIG = 1


def process_state() -> PartialState:
    return PartialState(cpu=not torch.cuda.is_available())


def backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def leave_process_group() -> None:
    """Destroy the default process group before the interpreter shuts down.

    Left to interpreter finalisation, gloo's worker threads can be torn down while
    still joinable and the C++ runtime aborts the process ("terminate called without
    an active exception") after the run has finished and published its output, so a
    finished job would report failure. Called once per worker at the end of `train`.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def die_with_launcher() -> None:
    """In a launched worker: ask Linux to SIGKILL us when the launcher dies.

    torch's elastic launcher starts workers in their own sessions, so a SIGKILL of the
    launcher (or its process group) would leave them training as orphans, holding the
    output folder. With this they stop with it, as a scheduler expects.
    """
    if not launched_externally() or not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        return
    if os.getppid() != parent:  # the launcher died before the request took effect
        os._exit(1)
