"""Trainer callbacks every stage gets: complete-checkpoint marking, metrics, the NaN guard.

They use only the public `TrainerCallback` hooks, so they work the same under
transformers' Trainer and every TRL trainer built on it.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from transformers import TrainerCallback

from llmforge.distributed.state import process_state
from llmforge.engine import checkpoints
from llmforge.engine.tracking import RunLog


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN/inf loss or weights; the run stops before saving anything from it."""

    def __init__(self, step: int, what: str) -> None:
        super().__init__(f"{what} at step {step}")
        self.step = step
        self.what = what


def _all_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters() if p.is_floating_point())


class CheckpointCallback(TrainerCallback):
    """Marks a checkpoint complete once every rank has written it, then rotates old ones.

    Weights are checked for NaN/inf before marking: a checkpoint of broken weights never
    becomes the one `resume: auto` picks.
    """

    def __init__(self, folder: Path, keep_last: int, metrics: Path | None = None) -> None:
        self.folder = folder
        self.keep_last = keep_last
        self.metrics = metrics  # where metrics.jsonl ends is recorded, so a resume cuts it back exactly there

    def on_save(self, args, state, control, model=None, **kwargs):
        checkpoint = self.folder / f"checkpoint-{state.global_step}"
        if model is not None and not _all_finite(model):
            if state.is_world_process_zero:
                checkpoints.remove_dir(checkpoint)
            raise NonFiniteLoss(state.global_step, "non-finite (NaN/inf) weights")
        process_state().wait_for_everyone()
        if state.is_world_process_zero:
            offset = self.metrics.stat().st_size if self.metrics is not None and self.metrics.exists() else None
            checkpoints.mark_complete(checkpoint, state.global_step, offset)
            best = (self.folder / f"checkpoint-{state.best_global_step}",) if state.best_global_step else ()
            checkpoints.rotate(self.folder, self.keep_last, keep=best)
        return control


class MetricsCallback(TrainerCallback):
    """Sends each Trainer log, with its step, to metrics.jsonl and the trackers; adds perplexity to eval lines."""

    def __init__(self, log: RunLog) -> None:
        self.log = log

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return control
        record = {"step": state.global_step, **{k: _plain(v) for k, v in logs.items()}}
        if "eval_loss" in record:
            record["eval_perplexity"] = perplexity(record["eval_loss"])
        self.log.append(record)
        return control


class NanGuardCallback(TrainerCallback):
    """Stops the run when a logged training loss is NaN/inf (the Trainer's own filter is off)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise NonFiniteLoss(state.global_step, f"training loss {loss}")
        return control


class TrainingComplete(Exception):
    """The run resumed from the checkpoint of its last step: there is nothing left to train."""


class StopAtMaxSteps(TrainerCallback):
    """A run resumed from the checkpoint of its last step publishes that checkpoint instead of training.

    transformers' loop checks for the end only after a step, so resuming at `max_steps` would train one
    more (step max_steps + 1, changing the weights); a step about to begin at or past the end is stopped
    here, before its forward pass, with the checkpoint's weights loaded.
    """

    def on_step_begin(self, args, state, control, **kwargs):
        if state.max_steps > 0 and state.global_step >= state.max_steps:
            raise TrainingComplete()
        return control


def perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf


def _plain(value):
    return value.item() if isinstance(value, torch.Tensor) else value


class GenerationClock(TrainerCallback):
    """Logs how a step's time splits between sampling and training (`time/generation`, `time/training`,
    `generation_share`, as our PPO loop logs them) for trainers that generate inside their step (TRL's GRPO).
    A forward counts as generation when it carries a KV cache (`past_key_values`), which sampling's always do
    and training's never do; the time is read with the model's public forward hooks. It must come before
    MetricsCallback, which writes the log it adds to."""

    def __init__(self) -> None:
        self.generating = self.step_generation = 0.0
        self.step_started = self.forward_started = None
        self.window: list[tuple[float, float]] = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        inner.register_forward_pre_hook(self._before, with_kwargs=True)
        inner.register_forward_hook(self._after)
        return control

    def _before(self, module, args, kwargs):
        import time

        self.forward_started = time.perf_counter() if kwargs.get("past_key_values") is not None else None

    def _after(self, module, args, output):
        import time

        if self.forward_started is not None:
            self.step_generation += time.perf_counter() - self.forward_started
            self.forward_started = None

    def on_step_begin(self, args, state, control, **kwargs):
        import time

        self.step_started, self.step_generation = time.perf_counter(), 0.0
        return control

    def on_step_end(self, args, state, control, **kwargs):
        import time

        if self.step_started is not None:
            self.window.append((self.step_generation, time.perf_counter() - self.step_started))
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and "loss" in logs and self.window:
            generation = sum(g for g, _ in self.window) / len(self.window)
            total = sum(t for _, t in self.window) / len(self.window)
            logs.update({"time/generation": generation, "time/training": total - generation,
                         "generation_share": generation / max(total, 1e-9)})
            self.window.clear()
        return control
