"""Fault harness, checkpoints: planted pickles, a kill after the last checkpoint, a corrupt newest checkpoint.

Each test runs the real CLI on the tiny pretraining recipe (seconds) and compares with an uninterrupted run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from llmforge.engine import checkpoints
from tests.faults.harness import TWENTY, lines, plant, same_weights
from tests.helpers import (
    TINY_PRETRAIN,
    checkpoint_complete,
    kill_when,
    run_cli,
    start_run,
    write_recipe,
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted 20-step run every fault is compared with."""
    folder = tmp_path_factory.mktemp("reference")
    result = run_cli("train", str(write_recipe(folder, **TWENTY)))
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "run"


def test_a_kill_after_the_last_checkpoint_publishes_it_without_training_on(reference, tmp_path):
    """SIGKILL right after checkpoint-20 (the last step) is marked: the rerun publishes checkpoint-20's weights
    (no step 21, no second summary or evaluation) and metrics.jsonl matches the uninterrupted run's."""
    recipe = write_recipe(tmp_path, **TWENTY)
    kill_when(start_run(recipe), checkpoint_complete(tmp_path / "run", 20))
    result = run_cli("train", str(recipe))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "holds the last step" in result.stderr
    run = tmp_path / "run"
    assert max(row["step"] for row in lines(run)) == 20
    assert same_weights(reference, run)
    keys = [sorted(k for k in row if k not in ("train_runtime", "train_samples_per_second", "train_steps_per_second",
                                                 "total_flos", "eval_runtime", "eval_samples_per_second",
                                                 "eval_steps_per_second", "train_tokens_per_second"))
            for row in lines(run)]
    assert [row["step"] for row in lines(run)] == [row["step"] for row in lines(reference)]
    assert len(keys) == len(lines(reference))
    info = json.loads((run / "run.json").read_text())
    ref_info = json.loads((reference / "run.json").read_text())
    assert info["final_metrics"]["eval_loss"] == ref_info["final_metrics"]["eval_loss"]
    assert info["final_metrics"]["train_loss"] == pytest.approx(ref_info["final_metrics"]["train_loss"], abs=1e-3)


def test_a_completed_run_without_run_json_republishes_the_same_weights(reference, tmp_path):
    shutil.copytree(reference, tmp_path / "run")
    (tmp_path / "run" / "run.json").unlink()
    shutil.rmtree(tmp_path / "run" / "final")
    recipe = write_recipe(tmp_path, **TWENTY)
    result = run_cli("train", str(recipe))
    assert result.returncode == 0, result.stderr[-3000:]
    assert same_weights(reference, tmp_path / "run")
    assert max(row["step"] for row in lines(tmp_path / "run")) == 20


@pytest.mark.parametrize("damaged", ["model.safetensors", "optimizer.pt"])
def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before(reference, tmp_path, damaged):
    """A truncated file in the newest checkpoint (marker intact): the rerun says which checkpoint it skipped
    and why, resumes from the one before, and ends with the uninterrupted run's weights."""
    recipe = write_recipe(tmp_path, **TWENTY)
    kill_when(start_run(recipe), checkpoint_complete(tmp_path / "run", 20))
    target = tmp_path / "run" / "checkpoints" / "checkpoint-20" / damaged
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    result = run_cli("train", str(recipe))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Not resuming from checkpoint-20: {damaged} has" in result.stderr
    assert "Resuming from" in result.stderr and "checkpoint-10" in result.stderr
    assert (tmp_path / "run" / "checkpoints" / "damaged-checkpoint-20").is_dir()
    assert same_weights(reference, tmp_path / "run")


def test_a_corrupt_checkpoint_named_by_path_is_refused(reference, tmp_path):
    shutil.copytree(reference / "checkpoints", tmp_path / "checkpoints")
    checkpoint = tmp_path / "checkpoints" / "checkpoint-20"
    (checkpoint / "model.safetensors").write_bytes(b"broken")
    result = run_cli("train", str(write_recipe(tmp_path, **TWENTY)), f"checkpoint.resume={checkpoint}")
    assert result.returncode == 2 and "cannot be trusted" in result.stderr and "Traceback" not in result.stderr


PPO = {"stage": "ppo", "model": {"name": "tiny-llama"},
       "data": {"train": [{"name": "arithmetic-prompts", "options": {"num_samples": 64, "max_operand": 9}}],
                "eval": [], "max_length": 64},
       "ppo": {"reward_functions": ["arithmetic"], "value_model": "policy", "rollout_batch_size": 4,
               "max_new_tokens": 4, "ppo_epochs": 1},
       "train": {"max_steps": 4, "micro_batch_size": 4, "lr": 1e-4}, "checkpoint": {"every_steps": 2, "keep_last": 3},
       "logging": {"every_steps": 1}}


@pytest.mark.parametrize("kind", ["trainer", "ppo"])
def test_a_planted_pickle_never_runs(tmp_path, kind):
    """Every pickle-based file of a checkpoint (Trainer: optimizer, scheduler, RNG state; PPO: accelerate's
    optimizer and RNG files) replaced by an exploit, one at a time: resuming never runs it, says which file
    it refused, and falls back to the checkpoint before."""
    recipe = write_recipe(tmp_path, **TWENTY) if kind == "trainer" else write_recipe(
        tmp_path, base={**TINY_PRETRAIN, **PPO})
    result = run_cli("train", str(recipe))
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    newest = checkpoints.complete_checkpoints(run / "checkpoints")[-1]
    files = sorted(p for p in newest.rglob("*") if p.suffix in (".pt", ".pth", ".bin", ".pkl"))
    files = [p for p in files if p.name != "training_args.bin"]
    assert len(files) >= 2, files
    for file in files:
        canary = tmp_path / f"pwned-{file.name}"
        backup = tmp_path / "backup"
        shutil.rmtree(backup, ignore_errors=True)
        shutil.copytree(newest, backup)
        plant(file, canary)
        (run / "run.json").unlink()
        result = run_cli("train", str(recipe))
        assert not canary.exists(), f"code planted in {file.name} ran"
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"{file.name} holds objects that are not plain data" in result.stderr
        shutil.rmtree(run / "checkpoints" / f"damaged-{newest.name}")
        shutil.rmtree(newest, ignore_errors=True)
        shutil.copytree(backup, newest)
