"""Print the recipe reference (stages, every key, type, default, meaning) as Markdown, from the declarations.

    python scripts/recipe_reference.py            # print
    python scripts/recipe_reference.py --write    # refresh the section in docs/reference.md

tests/test_readme.py fails when that section is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from llmforge.config.reference import reference

START, END = "<!-- recipe-reference:start -->", "<!-- recipe-reference:end -->"
REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference.md"


def main() -> None:
    text = reference()
    if "--write" not in sys.argv:
        print(text)
        return
    document = REFERENCE.read_text()
    head, rest = document.split(START)
    _, tail = rest.split(END)
    REFERENCE.write_text(f"{head}{START}\n{text}{END}{tail}")


if __name__ == "__main__":
    main()
