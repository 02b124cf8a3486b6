"""Print the recipe reference (every key, type, default, meaning) as Markdown, from the schema.

    python scripts/recipe_reference.py            # print
    python scripts/recipe_reference.py --write    # refresh the section in docs/reference.md

tests/test_readme.py fails when that section is stale.
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from llmforge.config.schema import DataSource, RunConfig

START, END = "<!-- recipe-reference:start -->", "<!-- recipe-reference:end -->"
REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference.md"


def _type(annotation) -> str:
    text = repr(annotation) if not isinstance(annotation, type) else annotation.__name__
    return (text.replace("typing.", "").replace("Literal", "one of ").replace("NoneType", "None")
            .replace("llmforge.config.schema.", "").replace("|", "\\|"))


def _default(field) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        return "" if isinstance(value, BaseModel) else f"`{value}`"
    return "**required**" if field.default is PydanticUndefined else f"`{field.default}`"


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        nested = field.annotation if isinstance(field.annotation, type) and issubclass(field.annotation,
                                                                                      BaseModel) else None
        if nested is not None:
            rows += _rows(nested, f"{prefix}{name}.")
            continue
        shown = "list of sources (below)" if typing.get_args(field.annotation) == (DataSource,) else _type(
            field.annotation)
        rows.append(f"| `{prefix}{name}` | {shown} | {_default(field)} | {field.description or ''} |")
    return rows


def reference() -> str:
    header = "| key | type | default | meaning |\n|---|---|---|---|\n"
    source = "\n".join(_rows(DataSource, "- "))
    return (f"{header}" + "\n".join(_rows(RunConfig, "")) + "\n\nEach entry of `data.train` / `data.eval`:\n\n"
            f"{header}{source}\n")


def main() -> None:
    text = reference()
    if "--write" not in sys.argv:
        print(text)
        return
    readme = REFERENCE.read_text()
    head, rest = readme.split(START)
    _, tail = rest.split(END)
    REFERENCE.write_text(f"{head}{START}\n{text}{END}{tail}")


if __name__ == "__main__":
    main()
