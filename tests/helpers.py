"""Helpers for tests that run llmforge as a user does: recipes on disk, the real CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

# A pretraining run small enough for seconds on a CI core: ~1M params, 64-token blocks.
TINY_PRETRAIN: dict[str, Any] = {
    "stage": "pretrain",
    "seed": 7,
    "model": {"name": "tiny-llama"},
    "data": {
        "train": [{"name": "tinytext", "options": {"num_documents": 400}}],
        "eval": [{"name": "tinytext", "split": "test", "options": {"num_documents": 60}}],
        "max_length": 64,
    },
    "train": {"max_steps": 30, "micro_batch_size": 8, "lr": 3.0e-3, "warmup_ratio": 0.1},
    "checkpoint": {"every_steps": 10, "keep_last": 2},
    "logging": {"every_steps": 5},
}


def deep_update(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_update(merged[key], value)
        else:
            merged[key] = value
    return merged


def write_recipe(folder: Path, name: str = "recipe.yaml", base: dict | None = None, **changes: Any) -> Path:
    recipe = deep_update(base or TINY_PRETRAIN, changes)
    recipe.setdefault("output_dir", str(folder / "run"))
    path = folder / name
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "llmforge", *args]


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `llmforge ARGS` in a fresh process and capture its output."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=timeout, env=env)


def start_run(recipe: Path, *overrides: str) -> subprocess.Popen:
    """`llmforge train RECIPE` in the background, to be killed."""
    return subprocess.Popen(cli_command("train", str(recipe), *overrides), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def kill_when(process: subprocess.Popen, condition, timeout: float = 240, poll: float = 0.002) -> None:
    """SIGKILL `process` as soon as `condition()` holds."""
    deadline = time.time() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"run ended before the kill point:\n{process.stderr.read()[-3000:]}")
        if time.time() > deadline:
            process.kill()
            raise AssertionError("kill point never reached")
        time.sleep(poll)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def checkpoint_complete(run: Path, step: int):
    from llmforge.engine.checkpoints import MARKER

    return lambda: (run / "checkpoints" / f"checkpoint-{step}" / MARKER).is_file()
