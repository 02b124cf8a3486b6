"""Keep third-party chatter out of the user's view unless --verbose, without importing what it quiets.

Every command starts here, including one that ends at a typo in a recipe, so nothing here imports torch,
transformers or datasets: the environment variables they read when they load do what their setters would,
and a library already loaded (a command run in-process) is told directly.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

VERBOSE = False  # set by quiet(): whether the libraries' own output is wanted
GPU_DEVICES = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")  # NVIDIA, AMD ROCm, WSL's GPU


def quiet(verbose: bool) -> None:
    """transformers' progress bars and load reports (an expected new head), deprecation warnings, and datasets'
    progress bars when stderr is not a terminal (a log file would fill with them, verbose or not)."""
    global VERBOSE
    VERBOSE = verbose
    if not any(Path(device).exists() for device in GPU_DEVICES):  # DeepSpeed (imported by TRL) would warn
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # that it found none, on every command
    if not sys.stderr.isatty():
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        if "datasets" in sys.modules:
            sys.modules["datasets"].disable_progress_bars()
    if verbose:
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' bars follow the hub's setting
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*is deprecated.*")
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()


def deepspeed_accelerator() -> None:
    """Name DeepSpeed's accelerator before it loads, where torch sees no CUDA device: left to detect it, DeepSpeed
    warns "Setting accelerator to CPU. If you have GPU ... we were unable to detect it" on every CPU run. Called
    by every DeepSpeed run's configuration (distributed/strategy.py), once torch is loaded anyway."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


@contextlib.contextmanager
def library_output() -> Iterator[None]:
    """Keep what a library prints itself (lm-eval's "bootstrapping for stddev" lines and their progress bars)
    off the screen unless --verbose; llmforge's own log lines still show."""
    if VERBOSE:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield
