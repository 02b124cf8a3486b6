"""A sweep file: the base recipe or pipeline, the search space over its keys, the objective, the budget,
the sampler, the pruner and the storage. Checked up front, like a recipe: a search key the base does not
have is an error before any trial starts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from llmforge.config.loader import read_yaml
from llmforge.config.schema import Section
from llmforge.errors import UserError


class Parameter(Section):
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = Field(False, description="sample on a log scale (float and int)")
    step: float | None = Field(None, description="a grid step (float and int)")
    choices: list[Any] | None = Field(None, description="categorical values (any YAML values)")

    @model_validator(mode="after")
    def _bounds(self) -> Parameter:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs `choices`")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError(f"a {self.type} parameter needs `low` <= `high`")
        elif self.log and self.low <= 0:
            raise ValueError("`log: true` needs `low` > 0")
        return self

    def values(self) -> list[Any]:
        """Every value, for grid search: the choices, or low..high by step."""
        if self.type == "categorical":
            return list(self.choices or [])
        if self.step is None:
            raise ValueError("grid search needs `step` (or `choices`) for every parameter")
        count = int(round((self.high - self.low) / self.step)) + 1
        cast = int if self.type == "int" else float
        return [cast(self.low + i * self.step) for i in range(count)]


class Objective(Section):
    metric: str = Field(description="a final metric of the run (a pipeline: STAGE.metric)")
    direction: Literal["minimize", "maximize"]


class Budget(Section):
    n_trials: int | None = Field(None, ge=1, description="trials in all, over every process sharing the study")
    timeout: float | None = Field(None, gt=0, description="seconds this process starts new trials for")


class Sampler(Section):
    type: Literal["tpe", "random", "grid", "cmaes"] = "tpe"
    seed: int | None = 0
    startup_trials: int = Field(5, ge=0, description="TPE/CMA-ES: random trials before the model takes over")


class Pruner(Section):
    type: Literal["none", "median", "hyperband"] = "none"
    metric: str | None = Field(None, description="a metric the run logs while it trains (e.g. eval_loss)")
    direction: Literal["minimize", "maximize"] | None = Field(None, description="default: the objective's")
    warmup_steps: int = Field(0, ge=0, description="median: no pruning before this step")
    startup_trials: int = Field(2, ge=0, description="median: trials that finish before any is pruned")


class SweepSpec(Section):
    base: str = Field(description="the recipe or pipeline each trial runs (path, relative to the sweep file)")
    output_dir: str = Field(description="the sweep folder: study.db, trial-NNNN/ run folders, best.yaml, report")
    overrides: list[str] = Field(default_factory=list, description="key=value set in every trial")
    space: dict[str, Parameter] = Field(min_length=1, description="recipe keys (pipelines: STAGE.key) to search")
    objective: Objective | list[Objective]
    budget: Budget = Field(default_factory=Budget)
    sampler: Sampler = Field(default_factory=Sampler)
    pruner: Pruner = Field(default_factory=Pruner)
    storage: str | None = Field(None, description="default sqlite in output_dir; 'journal' for a journal file "
                                "(shared file systems); or a database URL")
    study_name: str = "llmforge"
    start_from_base: bool = Field(True, description="the first trial runs the base's own values of the searched "
                                  "keys, so the table shows what the search gained over them")
    retry_interrupted: bool = Field(True, description="a trial whose process died (SIGKILL, a lost node) runs "
                                    "again in its own folder, resuming from its checkpoint; false: it stays failed")
    seeds: list[int] | None = Field(None, min_length=1, description="run every trial once per seed (the recipe's "
                                    "`seed`, in trial-NNNN/seed-S/) and score it by the mean: where one seed moves "
                                    "the metric more than a setting does, a single run picks the luckiest seed")

    @model_validator(mode="after")
    def _seeds(self) -> SweepSpec:
        if self.seeds and len(set(self.seeds)) != len(self.seeds):
            raise ValueError("`seeds` lists a seed twice")
        if self.seeds and "seed" in self.space:
            raise ValueError("`seed` is both searched and listed in `seeds`: keep one")
        return self

    @property
    def objectives(self) -> list[Objective]:
        return self.objective if isinstance(self.objective, list) else [self.objective]


def load_sweep(path: str | Path) -> tuple[SweepSpec, Path, bool]:
    """(the spec, the base file, whether the base is a pipeline), every search key checked against the base."""
    path = Path(path)
    raw = read_yaml(path)
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UserError(f"{path}: " + (f"'{where}': " if where else "") + f"{first['msg']}.") from None
    base = Path(spec.base) if Path(spec.base).is_absolute() else (path.parent / spec.base)
    if not base.is_file():
        base = Path(spec.base)
    if not base.is_file():
        raise UserError(f"{path}: base '{spec.base}' does not exist (relative to {path.parent} or {Path.cwd()}).")
    pipeline = "stages" in read_yaml(base)
    if spec.pruner.type != "none" and not spec.pruner.metric:
        raise UserError(f"{path}: pruner.metric: name the metric the pruner watches (e.g. eval_loss).")
    if pipeline and spec.pruner.type != "none":
        raise UserError(f"{path}: pruning watches one run's metrics; a pipeline base is swept without a pruner.")
    if spec.sampler.type == "cmaes" and any(p.type == "categorical" for p in spec.space.values()):
        raise UserError(f"{path}: the CMA-ES sampler searches numbers only; use tpe for categorical parameters.")
    if spec.sampler.type == "grid":
        try:
            [p.values() for p in spec.space.values()]
        except ValueError as exc:
            raise UserError(f"{path}: {exc}.") from None
    for key, parameter in spec.space.items():  # every key must exist: resolve the base with a sample value
        sample = parameter.choices[0] if parameter.type == "categorical" else parameter.low
        check(base, pipeline, [*spec.overrides, override(key, sample)], f"{path}: space.{key}")
    if spec.seeds:
        check(base, pipeline, [*spec.overrides, override("seed", spec.seeds[0])], f"{path}: seeds")
    return spec, base, pipeline


def base_values(spec: SweepSpec, base: Path, pipeline: bool) -> dict[str, Any] | None:
    """The base recipe's own values of the searched keys (None for a pipeline base, or a value the space
    cannot hold)."""
    if pipeline:
        return None
    from llmforge.config import load_config

    tree = load_config(base, spec.overrides).model_dump()
    values = {}
    for key, parameter in spec.space.items():
        value: Any = tree
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        inside = value in (parameter.choices or []) if parameter.type == "categorical" else (
            isinstance(value, (int, float)) and parameter.low <= value <= parameter.high)
        if not inside:
            return None
        values[key] = value
    return values


def seed_dir(run_dir: Path, seed: int | None) -> Path:
    """Where a trial's run of one of the sweep's `seeds` lives (the trial folder itself without `seeds`)."""
    return run_dir if seed is None else run_dir / f"seed-{seed}"


def override(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"


def check(base: Path, pipeline: bool, overrides: list[str], where: str) -> None:
    from llmforge.config import load_config
    from llmforge.pipeline.spec import load_pipeline

    try:
        if pipeline:
            load_pipeline(base, overrides)
        else:
            load_config(base, overrides)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
