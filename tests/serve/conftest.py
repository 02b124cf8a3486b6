"""A served base model and a LoRA run on it, as users start them: `llmforge serve` in a process of its own."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from llmforge.serve.server import launch
from tests.helpers import DIGITS, TINY_SFT, write_recipe

KEY = "sk-llmforge-test"


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory) -> Path:
    """Eight LoRA steps of the preset on arithmetic (its base saved to RUN/base): an adapter that answers
    differently from its base."""
    from llmforge.config import load_config
    from llmforge.stages import run as run_stage

    folder = tmp_path_factory.mktemp("serve-lora")
    recipe = write_recipe(folder, base=TINY_SFT, model={"name": "tiny-llama"},
                          adapter={"type": "lora", "r": 8, "alpha": 16},
                          data={"train": [{"name": "arithmetic-sft", "options": {"num_samples": 400, **DIGITS}}],
                                "eval": []},
                          train={"max_steps": 8, "micro_batch_size": 8, "lr": 1.0e-2},
                          checkpoint={"every_steps": 100}, logging={"every_steps": 4})
    return run_stage(load_config(recipe)).output_dir


@contextmanager
def server(*args: str, timeout: float = 120) -> Iterator[tuple[str, subprocess.Popen]]:
    """`llmforge serve ARGS --port 0` until the block ends (SIGTERM, then SIGKILL if it hangs)."""
    url, process = launch(list(args), timeout)
    try:
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def served(lora_run, tmp_path_factory) -> Iterator[dict]:
    votes = tmp_path_factory.mktemp("votes") / "votes.jsonl"
    with server(f"base={lora_run / 'base'}", f"lora={lora_run}", "--api-key", KEY, "--max-batch-size", "8",
                "--max-queue", "40", "--votes", str(votes)) as (url, process):
        yield {"url": url, "process": process, "votes": votes, "run": lora_run}
