"""README's first lines are the two commands; its recipe reference matches the schema."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _reference_module():
    spec = importlib.util.spec_from_file_location("recipe_reference", ROOT / "scripts" / "recipe_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_section_is_current():
    module = _reference_module()
    reference = (ROOT / "docs" / "reference.md").read_text()
    section = reference.split(module.START)[1].split(module.END)[0]
    assert section.strip() == module.reference().strip(), "run: python scripts/recipe_reference.py --write"


def test_readme_opens_with_demo_and_test_commands_that_ci_uses():
    lines = (ROOT / "README.md").read_text().splitlines()
    commands = [line for line in lines[:8] if line.startswith("bash scripts/")]
    assert [c.split()[1] for c in commands] == ["scripts/demo.sh", "scripts/test.sh"]
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_the_code_layout_lists_every_module():
    """docs/development.md's layout table names each package and top-level module of llmforge, and only those."""
    text = (ROOT / "docs" / "development.md").read_text()
    table = text.split("<!-- layout:start -->")[1].split("<!-- layout:end -->")[0]
    listed = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    package = ROOT / "llmforge"
    present = {f"llmforge/{p.name}/" for p in package.iterdir() if p.is_dir() and not p.name.startswith("__")}
    present |= {f"llmforge/{p.name}" for p in package.glob("*.py") if not p.name.startswith("__")}
    assert listed == present
