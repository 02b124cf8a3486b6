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

ROOT = Path(__file__).resolve().parents[1]

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

DIGITS = {"max_operand": 9}
# SFT of the tiny pretrained model on single-digit arithmetic (the start of every alignment test).
TINY_SFT: dict[str, Any] = {
    "stage": "sft",
    "seed": 11,
    "data": {
        "train": [{"name": "arithmetic-sft", "options": {"num_samples": 20000, **DIGITS}}],
        "eval": [{"name": "arithmetic-sft", "split": "test", "options": DIGITS},
                 {"name": "arithmetic-prompts", "split": "test", "options": DIGITS}],
        "max_length": 64,
    },
    "train": {"max_steps": 300, "micro_batch_size": 32, "lr": 3.0e-3, "warmup_ratio": 0.05},
    "checkpoint": {"every_steps": 100, "keep_last": 1},
    "logging": {"every_steps": 20},
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


def final_weights(run: Path) -> dict:
    from safetensors.torch import load_file

    adapter = run / "final" / "adapter_model.safetensors"
    return load_file(adapter if adapter.is_file() else run / "final" / "model.safetensors")


def assert_resumes_exactly(folder: Path, recipe: dict[str, Any], kill_after_checkpoint: int) -> None:
    """SIGKILL a run once a checkpoint is complete, run it again: same final weights as an uninterrupted run."""
    import json

    import torch

    reference = write_recipe(folder, name="ref.yaml", base=recipe, output_dir=str(folder / "ref"))
    result = run_cli("train", str(reference))
    assert result.returncode == 0, result.stderr[-3000:]
    killed = write_recipe(folder, name="killed.yaml", base=recipe, output_dir=str(folder / "killed"))
    kill_when(start_run(killed), checkpoint_complete(folder / "killed", kill_after_checkpoint))
    result = run_cli("train", str(killed))
    assert result.returncode == 0 and "Resuming from" in result.stderr, result.stderr[-3000:]
    a, b = final_weights(folder / "ref"), final_weights(folder / "killed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the summary covers the whole run too, not only the steps after the resume (up to the log's rounding)
    losses = [json.loads((folder / run / "run.json").read_text())["final_metrics"]["train_loss"]
              for run in ("ref", "killed")]
    assert abs(losses[0] - losses[1]) < 1e-3, losses


def metric_lines(run: Path, key: str) -> list[dict[str, Any]]:
    import json

    return [line for line in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if key in line]


def start_accuracy(model: Path | str) -> float:
    """Held-out greedy exact match of a model on the built-in task (single digits), as `llmforge eval` gives it."""
    import json

    result = run_cli("eval", str(model), "--dataset", "arithmetic-prompts", "--split", "test")
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])["eval_accuracy"]

