"""Checkpoint bookkeeping: completeness, resume choice, rotation, atomic publishing."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments

from llmforge.engine import checkpoints
from llmforge.engine.callbacks import CheckpointCallback, MetricsCallback, NanGuardCallback, NonFiniteLoss
from llmforge.engine.files import atomic_write_json, publish_dir
from llmforge.engine.run_record import MetricsLog, OutputLock
from llmforge.errors import UserError


def _make(folder, step: int, complete: bool = True):
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"x")
    if complete:
        checkpoints.mark_complete(path, step)
    return path


def test_resume_auto_skips_a_checkpoint_cut_short_by_a_kill(tmp_path):
    _make(tmp_path, 10)
    good = _make(tmp_path, 20)
    _make(tmp_path, 30, complete=False)
    assert checkpoints.resume_point("auto", tmp_path) == good
    assert checkpoints.resume_point("auto", tmp_path / "missing") is None


def test_resume_never_and_path(tmp_path):
    assert checkpoints.resume_point("never", tmp_path) is None
    ten = _make(tmp_path, 10)
    with pytest.raises(UserError, match="already holds checkpoints"):
        checkpoints.resume_point("never", tmp_path)
    assert checkpoints.resume_point(str(ten), tmp_path) == ten
    partial = _make(tmp_path, 20, complete=False)
    with pytest.raises(UserError, match="not a complete"):
        checkpoints.resume_point(str(partial), tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        checkpoints.resume_point(str(tmp_path / "nope"), tmp_path)


def test_rotation_keeps_newest_complete_and_drops_old_debris(tmp_path):
    for step in (10, 20, 30):
        _make(tmp_path, step)
    _make(tmp_path, 15, complete=False)
    _make(tmp_path, 40, complete=False)  # newer than the newest complete: may be being written
    checkpoints.rotate(tmp_path, keep_last=2)
    assert [p.name for p in checkpoints.all_checkpoints(tmp_path)] == ["checkpoint-20", "checkpoint-30",
                                                                        "checkpoint-40"]
    assert checkpoints.discard_incomplete(tmp_path)[0].name == "checkpoint-40"
    assert not list(tmp_path.glob(".trash-*"))


def test_publish_dir_replaces_only_when_complete(tmp_path):
    target = tmp_path / "final"
    target.mkdir()
    (target / "old.txt").write_text("old")
    staging = tmp_path / ".staging"
    staging.mkdir()
    (staging / "new.txt").write_text("new")
    publish_dir(staging, target)
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert not staging.exists() and not (tmp_path / ".final.old").exists()


def test_atomic_json_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "run.json", {"a": 1})
    atomic_write_json(tmp_path / "run.json", {"a": 2})
    assert json.loads((tmp_path / "run.json").read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_metrics_truncate_after_resume_point(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in (5, 10, 15, 20):
        log.append({"step": step, "loss": 1.0 / step})
    with log.path.open("a") as handle:
        handle.write('{"step": 25, "lo')  # a line cut by SIGKILL
    log.truncate_after(10)
    assert [r["step"] for r in log.read()] == [5, 10]


def test_output_lock_is_exclusive(tmp_path):
    with OutputLock(tmp_path), pytest.raises(UserError, match="Another llmforge process"):
        OutputLock(tmp_path).__enter__()
    with OutputLock(tmp_path):  # released after the first holder exits
        pass


def _state(step: int) -> TrainerState:
    state = TrainerState()
    state.global_step = step
    return state


def test_nan_guard_raises_on_non_finite_loss():
    guard = NanGuardCallback()
    args, control = TrainingArguments(output_dir="unused", use_cpu=True), TrainerControl()
    guard.on_log(args, _state(3), control, logs={"loss": 1.5})
    for bad in (math.nan, math.inf):
        with pytest.raises(NonFiniteLoss, match="step 4"):
            guard.on_log(args, _state(4), control, logs={"loss": bad})


def test_checkpoint_with_nan_weights_is_never_marked(tmp_path):
    callback = CheckpointCallback(tmp_path, keep_last=2)
    args, control = TrainingArguments(output_dir=str(tmp_path), use_cpu=True), TrainerControl()
    model = torch.nn.Linear(2, 2)
    _make(tmp_path, 5, complete=False)
    callback.on_save(args, _state(5), control, model=model)
    assert checkpoints.is_complete(tmp_path / "checkpoint-5")
    with torch.no_grad():
        model.weight[0, 0] = math.nan
    _make(tmp_path, 6, complete=False)
    with pytest.raises(NonFiniteLoss):
        callback.on_save(args, _state(6), control, model=model)
    assert not (tmp_path / "checkpoint-6").exists()
    assert checkpoints.resume_point("auto", tmp_path).name == "checkpoint-5"


def test_metrics_callback_adds_step_and_perplexity(tmp_path):
    log = MetricsLog(tmp_path / "m.jsonl")
    callback = MetricsCallback(log)
    args, control = TrainingArguments(output_dir=str(tmp_path), use_cpu=True), TrainerControl()
    callback.on_log(args, _state(7), control, logs={"eval_loss": math.log(4.0)})
    assert log.read() == [{"step": 7, "eval_loss": math.log(4.0), "eval_perplexity": pytest.approx(4.0)}]
