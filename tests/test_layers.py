"""The package's import graph: the layers below the stages never import them, and nothing imports the CLI.

Every `import`/`from ... import` in llmforge/ (function-level ones included) is read with ast and checked
against the arrows the design forbids.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "llmforge"
BELOW_STAGES = ("engine", "data", "registry", "config", "rl", "memory")


def imports() -> dict[str, set[str]]:
    """module (dotted) -> every llmforge module it imports."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names |= {f"{node.module}.{alias.name}" for alias in node.names}
        found[module] = {name for name in names if name.startswith("llmforge")}
    return found


def test_no_layer_below_the_stages_imports_them():
    wrong = [(module, target) for module, targets in imports().items() for target in targets
             if module.split(".")[1] in BELOW_STAGES and target.startswith("llmforge.stages")]
    assert not wrong, wrong


def test_nothing_imports_the_cli():
    wrong = [(module, target) for module, targets in imports().items() for target in targets
             if target.startswith("llmforge.cli") and module != "llmforge.__main__"]
    assert not wrong, wrong


def test_the_walk_sees_imports_inside_functions():
    """A control: the graph holds the function-level import the pipeline command makes of the pipeline."""
    assert "llmforge.pipeline.execution" in imports()["llmforge.commands.pipeline"]


def test_test_modules_do_not_import_each_other():
    """Shared test code lives in tests/helpers.py, fixtures and harness modules, not in another test module."""
    tests = Path(__file__).resolve().parent
    wrong = []
    for path in tests.rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else (
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            wrong += [(path.name, name) for name in names if name.startswith("tests.")
                      and name.rsplit(".", 1)[-1].startswith("test_")]
    assert not wrong, wrong
