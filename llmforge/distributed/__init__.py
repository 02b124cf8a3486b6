"""Scaling out: process state, strategy arguments (DDP/FSDP/DeepSpeed), launcher, SLURM."""

import os


def launched_externally() -> bool:
    """True inside torchrun/accelerate launch workers (they set LOCAL_RANK). Here, not in state.py, so the CLI
    can ask without importing torch."""
    return "LOCAL_RANK" in os.environ
