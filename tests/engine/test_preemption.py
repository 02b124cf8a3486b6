"""Preemption with real signals: SIGTERM and SIGUSR1 (what SLURM and Kubernetes send), and Ctrl-C, checkpoint
the current step and exit with a documented code; the same command then resumes to the uninterrupted weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from llmforge.engine import checkpoints
from llmforge.engine.stopped import EXIT_INTERRUPTED, EXIT_PREEMPTED
from tests.faults.harness import same_weights
from tests.helpers import cli_command, run_cli, write_recipe

# no periodic checkpoint before the end: whatever checkpoint exists was written on the signal
LONG = {"train": {"max_steps": 40, "scheduler": "constant", "warmup_ratio": 0.0},
        "checkpoint": {"every_steps": 1000}, "logging": {"every_steps": 1}}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    result = run_cli("train", str(write_recipe(folder, **LONG)))
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "run"


def start(recipe):
    return subprocess.Popen(cli_command("train", str(recipe)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def signal_after_step(process, run, step: int, *signals: int) -> None:
    deadline = time.time() + 240
    metrics = run / "metrics.jsonl"
    while not (metrics.is_file() and metrics.read_text().count('"loss"') >= step):
        assert process.poll() is None and time.time() < deadline, "the run ended before the signal"
        time.sleep(0.02)
    for number in signals:
        process.send_signal(number)
        time.sleep(0.05)


@pytest.mark.parametrize("name", ["SIGTERM", "SIGUSR1", "SIGINT"])
def test_a_signal_saves_the_current_step_and_the_rerun_resumes_exactly(reference, tmp_path, name):
    recipe = write_recipe(tmp_path, **LONG)
    run = tmp_path / "run"
    process = start(recipe)
    signal_after_step(process, run, 5, getattr(signal, name))
    code = process.wait(timeout=120)
    assert code == (EXIT_INTERRUPTED if name == "SIGINT" else EXIT_PREEMPTED), process.stderr.read()[-2000:]
    saved = checkpoints.complete_checkpoints(run / "checkpoints")
    assert len(saved) == 1 and 5 <= checkpoints.step_of(saved[0]) < 40
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "interrupted" and name in info["error"] and not (run / "final").exists()
    again = run_cli("train", str(recipe))
    assert again.returncode == 0 and "Resuming from" in again.stderr, again.stderr[-3000:]
    assert same_weights(reference, run)


def test_a_second_ctrl_c_stops_at_once(tmp_path):
    recipe = write_recipe(tmp_path, **LONG)
    process = start(recipe)
    signal_after_step(process, tmp_path / "run", 3, signal.SIGINT, signal.SIGINT)
    assert process.wait(timeout=120) == EXIT_INTERRUPTED
    assert not checkpoints.complete_checkpoints(tmp_path / "run" / "checkpoints")
