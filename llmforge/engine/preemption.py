"""Stopping on request without losing work: SIGTERM and SIGUSR1 (what SLURM and Kubernetes send before a
kill) and a first Ctrl-C make every rank finish its current optimizer step, write a complete checkpoint and
exit; running the same command again resumes exactly. A second Ctrl-C stops at once.

Exit codes: see `llmforge.engine.stopped`. The request is agreed across ranks at every step end (one tiny
all-reduce), so ranks that got the signal and ranks that did not stop at the same step.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import torch
from transformers import TrainerCallback

SIGNALS = ("SIGTERM", "SIGUSR1", "SIGINT")


class Requested:
    """Which signal asked this process to stop, once handlers are installed (None until one does)."""

    signal: str | None = None
    _installed = False

    @classmethod
    def install(cls) -> None:
        if cls._installed or threading.current_thread() is not threading.main_thread():
            return
        for name in SIGNALS:
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), cls._handle)
        cls._installed = True

    @classmethod
    def _handle(cls, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if name == "SIGINT" and cls.signal is not None:  # the second Ctrl-C: stop now
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        cls.signal = cls.signal or name

    @classmethod
    def reset(cls) -> None:
        cls.signal = None


def agreed() -> str | None:
    """The stop request if any rank has one (every rank must call this at the same point)."""
    local = Requested.signal
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        device = "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"
        code = torch.tensor([SIGNALS.index(local) + 1 if local else 0], device=device)
        torch.distributed.all_reduce(code, op=torch.distributed.ReduceOp.MAX)
        return SIGNALS[int(code.item()) - 1] if int(code.item()) else None
    return local


class PreemptionCallback(TrainerCallback):
    """At the end of each optimizer step: if a stop was requested, save here and stop."""

    def __init__(self) -> None:
        self.stopped_by: str | None = None

    def on_step_end(self, args, state, control, **kwargs):
        reason = agreed()
        if reason is not None:
            self.stopped_by = reason
            control.should_save = True
            control.should_training_stop = True
        return control
