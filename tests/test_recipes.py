"""Every shipped recipe validates, so a schema change cannot silently break one."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmforge.config import dump, load_config
from llmforge.config.stages import spec_for
from llmforge.data.builtin import BUILTINS

CONFIGS = Path(__file__).parents[1] / "configs"
RECIPES = sorted(p for p in CONFIGS.rglob("*.yaml") if p.parent.name not in ("pipelines", "sweeps"))
SWEEPS = sorted((CONFIGS / "sweeps").glob("*.yaml"))
PIPELINES = sorted((CONFIGS / "pipelines").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_recipe_validates(recipe, tmp_path):
    """Each recipe validates, reads only keys its stage uses, round-trips through `llmforge config`, and its
    built-in data sources are in a format the stage trains on."""
    cfg = load_config(recipe)
    assert cfg.output_dir.startswith("runs/")
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(dump(cfg))
    assert load_config(resolved) == cfg
    spec = spec_for(cfg.stage)
    for source in cfg.data.train:
        if source.name in BUILTINS:
            assert BUILTINS[source.name].format in spec.formats, f"{source.name} is not read by {cfg.stage}"


@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: p.name)
def test_pipeline_validates_with_every_stage_inside_its_folder(pipeline):
    from llmforge.pipeline.spec import load_pipeline

    loaded = load_pipeline(pipeline)
    assert loaded.stages and all(s.config.output_dir.startswith(str(loaded.output_dir)) for s in loaded.stages)


@pytest.mark.parametrize("sweep", SWEEPS, ids=lambda p: p.name)
def test_sweep_validates(sweep):
    """Each shipped sweep's keys exist in its base recipe (every search value resolved against it)."""
    from llmforge.sweep.spec import load_sweep

    spec, base, pipeline = load_sweep(sweep)
    assert spec.output_dir.startswith("runs/") and base.is_file() and not pipeline
