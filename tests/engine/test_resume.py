"""Exact resume: real processes killed with SIGKILL end with the same weights as an uninterrupted run."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llmforge.engine.checkpoints import MARKER
from tests.helpers import checkpoint_complete, kill_when, run_cli, start_run, write_recipe

pytestmark = pytest.mark.slow

# ~150 short documents -> ~110 blocks of 64 tokens -> ~14 steps per epoch: 40 steps cross 2 epoch boundaries.
MULTI_EPOCH = {"data": {"train": [{"name": "tinytext", "options": {"num_documents": 150}}]},
               "train": {"max_steps": 40}, "checkpoint": {"every_steps": 5, "keep_last": 1}}
# Checkpoints fall on logging steps (every 5), so metrics.jsonl must match line for line too.


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "final" / "model.safetensors")


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), f"{name} differs after resume"


def _losses(run: Path) -> list[tuple[int, float]]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in lines if "loss" in r]


def test_sigkill_at_several_points_resumes_to_identical_weights(tmp_path):
    reference = write_recipe(tmp_path, name="ref.yaml", output_dir=str(tmp_path / "ref"), **MULTI_EPOCH)
    assert run_cli("train", str(reference)).returncode == 0

    recipe = write_recipe(tmp_path, name="killed.yaml", output_dir=str(tmp_path / "killed"), **MULTI_EPOCH)
    run = tmp_path / "killed"
    # Kill mid-step right after a checkpoint, then again in the second epoch, then let it finish.
    for step, delay in ((5, 0.3), (25, 0.05)):
        process = start_run(recipe)
        kill_when(process, checkpoint_complete(run, step))
        time.sleep(delay)
        assert process.returncode == -signal.SIGKILL
        assert json.loads((run / "run.json").read_text())["status"] == "running"
    result = run_cli("train", str(recipe))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming from" in result.stderr

    _assert_same_weights(tmp_path / "ref", run)
    assert _losses(tmp_path / "ref") == _losses(run), "the loss curve must match step for step"
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and len(info["resumed_from"]) == 2


def test_sigkill_during_checkpoint_save_keeps_last_good_checkpoint(tmp_path):
    # A ~10M-parameter model makes each save take long enough to be caught in the middle.
    big = {"model": {"name": "tiny-llama", "config_overrides": {"hidden_size": 384, "intermediate_size": 1024,
                                                                "num_hidden_layers": 6}},
           "train": {"max_steps": 8}, "checkpoint": {"every_steps": 2, "keep_last": 1},
           "logging": {"every_steps": 1}}
    reference = write_recipe(tmp_path, name="ref.yaml", output_dir=str(tmp_path / "ref"), **big)
    assert run_cli("train", str(reference)).returncode == 0

    recipe = write_recipe(tmp_path, name="killed.yaml", output_dir=str(tmp_path / "killed"), **big)
    run = tmp_path / "killed"
    checkpoint = run / "checkpoints" / "checkpoint-4"
    process = start_run(recipe)
    kill_when(process, lambda: checkpoint.is_dir() and not (checkpoint / MARKER).exists(), poll=0.0005)
    assert checkpoint.is_dir() and not (checkpoint / MARKER).exists(), "the kill must land inside the save"
    assert (run / "checkpoints" / "checkpoint-2" / MARKER).is_file(), "the last good checkpoint survives"

    result = run_cli("train", str(recipe))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "interrupted while saving" in result.stderr
    assert "Resuming from" in result.stderr and "checkpoint-2" in result.stderr
    _assert_same_weights(tmp_path / "ref", run)


def test_nan_loss_stops_with_clear_message_and_keeps_last_good_checkpoint(tmp_path):
    # Calibrated: with this seed and warmup, lr=100 gives finite losses until step 8, then NaN.
    recipe = write_recipe(tmp_path, train={"lr": 100.0, "warmup_ratio": 0.9, "scheduler": "constant_with_warmup",
                                           "max_grad_norm": 0.0, "max_steps": 40},
                          checkpoint={"every_steps": 2, "keep_last": 1}, logging={"every_steps": 1})
    result = run_cli("train", str(recipe))
    assert result.returncode == 2
    assert "Training stopped:" in result.stderr and "nan" in result.stderr.lower()
    assert "Traceback" not in result.stderr
    run = tmp_path / "run"
    kept = [p for p in (run / "checkpoints").iterdir() if (p / MARKER).is_file()]
    assert len(kept) == 1 and kept[0].name in result.stderr
    weights = load_file(kept[0] / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed" and "nan" in info["error"].lower()
    assert not (run / "final").exists()
