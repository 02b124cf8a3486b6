"""Every shipped recipe validates, so a schema change cannot silently break one."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmforge.config import load_config

RECIPES = sorted((Path(__file__).parents[1] / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_recipe_validates(recipe):
    cfg = load_config(recipe)
    assert cfg.output_dir.startswith("runs/")
