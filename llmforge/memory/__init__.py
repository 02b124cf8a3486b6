"""The memory plan: a recipe's predicted peak memory per process, worked out before anything is loaded.

`llmforge plan RECIPE` prints it; `llmforge train` and `llmforge pipeline` check it before a run starts and
stop with exit 2 when it exceeds what the device has free, naming the largest terms and changes that would
fit (`--force` runs anyway); `train.gradient_checkpointing: auto` reads it. The terms and how they were
measured are in estimate.py and docs/memory.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmforge.config.schema import RunConfig
from llmforge.memory.device import Budget, budget
from llmforge.memory.estimate import Estimate, GiB, estimate
from llmforge.memory.shapes import ModelShape, shape_of

__all__ = ["GiB", "Budget", "Estimate", "Plan", "plan", "checkpointing"]
CHECKPOINT_FLOOR = GiB  # auto checkpointing: never for activations smaller than this


@dataclass
class Plan:
    estimate: Estimate
    budget: Budget
    needed: int  # bytes on the device: the peak per process, times the processes sharing it (a CPU's)

    @property
    def fits(self) -> bool:
        return self.budget.bytes is None or self.needed <= self.budget.bytes


def _device() -> str:
    from llmforge.precision import current_device

    return current_device()


def _shape(model: Any, rename: dict[str, str], classifier: bool) -> ModelShape | None:
    """The shape of `model.name`, read through `rename` (a pipeline's later stages name earlier stages' outputs,
    which do not exist yet: each is renamed to the model its stage started from); None when unknown here."""
    from llmforge.errors import UserError

    name = rename.get(_key(model.name), model.name)
    try:
        return shape_of(model.model_copy(update={"name": name}) if name != model.name else model, classifier)
    except UserError:
        return None


def _key(name: str) -> str:
    from pathlib import Path

    return str(Path(name).expanduser().resolve()) if "/" in name or name.startswith(".") else name


def _inputs(cfg: RunConfig, rename: dict[str, str] | None = None,
            ) -> tuple[Any, ModelShape, dict[str, ModelShape | None], Any] | None:
    from llmforge.config.stages import Footprint, spec_for
    from llmforge.registry.families import family_for

    spec, rename = spec_for(cfg.stage), rename or {}
    if not spec.trains:
        return None
    footprint = spec.footprint(cfg) if spec.footprint else Footprint()
    shape = _shape(cfg.model, rename, footprint.sequence_classifier)
    if shape is None:
        return None
    reward = spec.reward_model(cfg) if spec.reward_model else None
    scored = {reward, footprint.critic}
    side = {name: _shape(cfg.model.for_other(name), rename, name in scored)
            for name in (*footprint.frozen_models, *((footprint.critic,) if footprint.critic else ()))}
    return footprint, shape, side, family_for(shape.model_type).lora_targets


def checkpointing(cfg: RunConfig, device: str | None = None, available: Budget | None = None,
                  rename: dict[str, str] | None = None) -> bool:
    """`train.gradient_checkpointing` resolved. `auto` is on where the activations a micro-batch saves would be at
    least 1 GiB and either more than the model's weights, gradients and optimizer states together (every LoRA
    run of a real size at a real length) or more than the device can hold beside them; off for the tiny presets
    and wherever the run fits without it, since recomputing only costs time (the results are the same)."""
    setting = cfg.train.gradient_checkpointing
    if setting != "auto":
        return bool(setting)
    found = _inputs(cfg, rename)
    if found is None:
        return False
    footprint, shape, side, targets = found
    device = device or _device()
    without = estimate(cfg, shape, footprint, device, side, False, targets)
    step = next(p for p in without.phases if p.name == "forward and backward")
    activations = next((t.bytes for t in step.terms if t.name == "activations"), 0)
    states = sum(t.bytes for t in without.phases[0].terms if t.name == "weights") + sum(
        t.bytes for t in next(p for p in without.phases if p.name == "optimizer step").terms
        if t.name in ("gradients", "optimizer states"))
    if activations < CHECKPOINT_FLOOR:
        return False
    room = (available or budget(device)).bytes
    return activations > states or (room is not None and without.peak * _sharing(cfg, device) > room)


def _sharing(cfg: RunConfig, device: str) -> int:
    """Processes that share one device's memory: a CPU's, every process on the node; a GPU's, one."""
    return cfg.distributed.nproc_per_node if device == "cpu" else 1


def plan(cfg: RunConfig, device: str | None = None, available: Budget | None = None,
         rename: dict[str, str] | None = None) -> Plan | None:
    """The recipe's plan on `device` (default: the one it will run on), or None when the stage trains no model
    or its model's configuration cannot be read here. `rename`: model names to read other models' shapes for
    (see stage_plans)."""
    device = device or _device()
    found = _inputs(cfg, rename)
    if found is None:
        return None
    footprint, shape, side, targets = found
    available = available or budget(device)
    predicted = estimate(cfg, shape, footprint, device, side, checkpointing(cfg, device, available, rename), targets)
    return Plan(predicted, available, predicted.peak * _sharing(cfg, device))


def stage_plans(configs: list[RunConfig], device: str | None = None) -> list[Plan | None]:
    """The plans of a chain of stages before any has run: a stage that starts from an earlier one's output
    (or names it as its reward, value or reference model) is planned with that stage's own start, whose shape
    the output has."""
    rename: dict[str, str] = {}
    plans = []
    for cfg in configs:
        plans.append(plan(cfg, device, rename=rename))
        rename[_key(cfg.output_dir)] = rename.get(_key(cfg.model.name), cfg.model.name)
    return plans
