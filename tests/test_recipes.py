"""Every shipped recipe validates, so a schema change cannot silently break one."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmforge.config import load_config

CONFIGS = Path(__file__).parents[1] / "configs"
RECIPES = sorted(p for p in CONFIGS.rglob("*.yaml") if p.parent.name != "pipelines")
PIPELINES = sorted((CONFIGS / "pipelines").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_recipe_validates(recipe):
    cfg = load_config(recipe)
    assert cfg.output_dir.startswith("runs/")


@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: p.name)
def test_pipeline_validates_with_every_stage_inside_its_folder(pipeline):
    from llmforge.pipeline.spec import load_pipeline

    loaded = load_pipeline(pipeline)
    assert loaded.stages and all(s.config.output_dir.startswith(str(loaded.output_dir)) for s in loaded.stages)
