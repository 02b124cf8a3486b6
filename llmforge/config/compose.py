"""The recipe class, put together from the stage declarations, and the check that every key a recipe sets is
one its stage reads.

`RunConfig` (schema.py) holds the sections every stage shares; the class a recipe is validated against adds
`stage` (one of the declared stages) and each stage's own options section, with the stage's cross-section
checks run after validation. It is rebuilt when a stage is registered at run time.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, create_model, model_validator

from llmforge.config.schema import RunConfig
from llmforge.config.stages import stage_specs

_CLASS: type[RunConfig] | None = None


def forget() -> None:
    global _CLASS
    _CLASS = None


def run_config_class() -> type[RunConfig]:
    global _CLASS
    if _CLASS is None:
        specs = stage_specs()

        def stage_checks(cfg: RunConfig) -> RunConfig:
            spec = specs.get(cfg.stage)
            if spec is not None and spec.check is not None:
                spec.check(cfg)
            return cfg

        sections: dict[str, Any] = {
            spec.name: (spec.options, Field(default_factory=spec.options, description=f"{spec.name} options"))
            for spec in specs.values() if spec.options is not None}
        names = tuple(specs) or ("none",)
        _CLASS = create_model(
            "RunConfig", __base__=RunConfig,
            __validators__={"stage_checks": model_validator(mode="after")(stage_checks)},
            stage=(Literal[names], Field(description="which stage this recipe runs: " + ", ".join(names))),
            **sections)
    return _CLASS


def validate_dict(data: dict[str, Any]) -> RunConfig:
    return run_config_class().model_validate(data)


def stage_sections() -> tuple[str, ...]:
    """The option sections, each read only by its own stage."""
    return tuple(spec.section for spec in stage_specs().values() if spec.section)


def unused_keys(stage: str, keys: list[str]) -> list[tuple[str, str]]:
    """(key, why) for each dotted key a recipe set that `stage` does not read (or refuses)."""
    spec = stage_specs().get(stage)
    if spec is None:
        return []
    allowed, found = spec.allowed(), []
    for key in keys:
        if key in spec.refuses or any(key.startswith(f"{refused}.") for refused in spec.refuses):
            found.append((key, "refused"))
        elif not any(key == a or key.startswith(f"{a}.") or a.startswith(f"{key}.") for a in allowed):
            found.append((key, "unused"))
    return found

