"""The recipe reference (docs/reference.md), derived from the schema and the stage declarations: which stages
exist, what each reads, every key with its type, default and meaning."""

from __future__ import annotations

import typing

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from llmforge.config.compose import run_config_class
from llmforge.config.schema import DataSource
from llmforge.config.stages import COMMON_KEYS, stage_specs

HEADER = "| key | type | default | meaning |\n|---|---|---|---|\n"


def _type(annotation: typing.Any) -> str:
    text = repr(annotation) if not isinstance(annotation, type) else annotation.__name__
    return (text.replace("typing.", "").replace("Literal", "one of ").replace("NoneType", "None")
            .replace("llmforge.config.schema.", "").replace("|", "\\|"))


def _default(field: typing.Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        return "" if isinstance(value, BaseModel) else f"`{value}`"
    return "**required**" if field.default is PydanticUndefined else f"`{field.default}`"


def rows(model: type[BaseModel], prefix: str, skip: tuple[str, ...] = ()) -> list[str]:
    found = []
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        nested = field.annotation if isinstance(field.annotation, type) and issubclass(field.annotation,
                                                                                      BaseModel) else None
        if nested is not None:
            found += rows(nested, f"{prefix}{name}.")
            continue
        shown = "list of sources (below)" if typing.get_args(field.annotation) == (DataSource,) else _type(
            field.annotation)
        found.append(f"| `{prefix}{name}` | {shown} | {_default(field)} | {field.description or ''} |")
    return found


def reference() -> str:
    specs = stage_specs()
    lines = ["| stage | what | rows it trains on | keys it reads besides " + ", ".join(f"`{k}`" for k in COMMON_KEYS)
             + " |", "|---|---|---|---|"]
    for spec in specs.values():
        reads = ", ".join(f"`{key}`" for key in spec.uses + ((spec.name,) if spec.options else ()))
        refused = f"; refuses {', '.join(f'`{k}`' for k in spec.refuses)}" if spec.refuses else ""
        lines.append(f"| `{spec.name}` | {spec.summary} | {', '.join(spec.formats) or '-'} | {reads}{refused} |")
    composed = run_config_class()
    sections = tuple(spec.name for spec in specs.values() if spec.options)
    text = "\n".join(lines) + "\n\nKeys every recipe may hold:\n\n" + HEADER + "\n".join(
        rows(composed, "", skip=sections)) + "\n"
    for spec in specs.values():
        if spec.options:
            text += f"\n`{spec.name}` options (read only by stage {spec.name}):\n\n" + HEADER + "\n".join(
                rows(spec.options, f"{spec.name}.")) + "\n"
    return text + "\nEach entry of `data.train` / `data.eval`:\n\n" + HEADER + "\n".join(rows(DataSource, "- ")) + "\n"
