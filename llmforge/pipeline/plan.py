"""The plan a pipeline prints before it starts: each stage, its size, and about how long it will take here.

The estimate is the stage's training FLOPs (6 x parameters x the tokens its steps can hold) over this
machine's matmul rate, measured in a quarter of a second, divided by how much of that rate the stage
reached on the machine the figures in docs/ come from (each stage declares it: `Cost` in its SPEC) (a 2-core Xeon with AMX, tiny models: small
matmuls and generation keep them far below the ceiling). It is a guide, right within a factor of about
1.5 there; on other hardware the ratio between stages holds better than the absolute time.
"""

from __future__ import annotations

import time

from llmforge.config.schema import ModelConfig, RunConfig
from llmforge.config.stages import Cost, spec_for

SETUP_SECONDS = 6.0  # loading, data preparation from the cache, publishing


def matmul_rate(seconds: float = 0.25) -> float:
    """FLOP/s of float32 512x512 matmuls on this machine (a quick probe, not the benchmark's ceiling)."""
    import torch

    a, b = torch.randn(512, 512), torch.randn(512, 512)
    a @ b
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        count += 1
    return 2 * 512**3 * count / (time.perf_counter() - started)


def parameter_count(model: ModelConfig, known: dict[str, int]) -> int | None:
    """Parameters of the model a stage starts from: a preset's, a folder's or a run's (read from its
    configuration, llmforge/memory/shapes.py), or an earlier stage's (by its output folder)."""
    if model.name in known:
        return known[model.name]
    from llmforge.errors import UserError
    from llmforge.memory.shapes import shape_of

    try:
        shape = shape_of(model)
    except UserError:  # an earlier stage's output, not there yet
        return None
    return shape.parameters if shape else None


def tokens_per_step(cfg: RunConfig, cost: Cost) -> int:
    rows = (cost.rows_per_step(cfg) if cost.rows_per_step else
            cfg.train.micro_batch_size * cfg.train.grad_accum_steps * cfg.distributed.nproc_per_node)
    return rows * (cost.tokens_per_row(cfg) if cost.tokens_per_row else cfg.data.max_length)


def estimate(cfg: RunConfig, params: int | None, rate: float) -> float | None:
    """Seconds for the stage on this machine, or None when its size is unknown until it starts."""
    cost, steps = spec_for(cfg.stage).cost, cfg.train.max_steps
    if params is None or steps <= 0 or cost is None:
        return None
    flops = 6 * params * tokens_per_step(cfg, cost) * cost.passes * steps
    return SETUP_SECONDS + flops / (rate * cost.efficiency)


def duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"~{seconds:.0f} s" if seconds < 90 else f"~{minutes:.0f} min" if minutes < 90 else f"~{minutes / 60:.1f} h"


def describe_plan(stages: list[tuple[str, RunConfig, bool]]) -> list[str]:
    """Lines of the plan for (name, config, already done) stages, in run order: steps, size, predicted peak
    memory per process (llmforge/memory) and time."""
    from llmforge.memory import stage_plans
    from llmforge.memory.render import gib

    rate = matmul_rate()
    memory = stage_plans([cfg for _, cfg, _ in stages])
    known: dict[str, int] = {}
    lines, total, unknown = [], 0.0, False
    for index, ((name, cfg, done), planned) in enumerate(zip(stages, memory, strict=True), start=1):
        params = planned.estimate.shape.parameters if planned else parameter_count(cfg.model, known)
        if params is not None:
            known[cfg.output_dir] = params
        size = f"{params / 1e6:,.1f}M params" if params else "size known at start"
        steps = f"{cfg.train.max_steps} steps" if cfg.train.max_steps > 0 else f"{cfg.train.epochs:g} epochs"
        if not spec_for(cfg.stage).trains:  # curate: data in, data out
            steps, size = "data only", ""
        peak = f"peak {gib(planned.estimate.peak)}" if planned else ""
        seconds = None if done else estimate(cfg, params, rate)
        when = "done, skipped" if done else duration(seconds) if seconds is not None else "?"
        unknown |= seconds is None and not done
        total += seconds or 0.0
        lines.append(f"  {index}. {name:<10} {cfg.stage:<8} {steps:<10} {size:<18} {peak:<16} {when}")
    head = f"Plan ({rate / 1e9:,.0f} GFLOP/s measured here; memory: predicted peak per process):"
    tail = f"  about {duration(total).lstrip('~')} in all" + (" (plus the stages marked ?)" if unknown else "")
    return [head, *lines, tail]
