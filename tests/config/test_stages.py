"""A stage is one declaration: a throw-away training stage and a stage that only writes a report, added from
this module alone, run through `llmforge train` and a pipeline, and seen in `llmforge config`, the recipe
reference and the pipeline report. Recipes are checked against what their stage reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import Field

from llmforge.cli import main
from llmforge.config.reference import reference
from llmforge.config.schema import RunConfig, Section
from llmforge.config.stages import StageSpec, register, spec_for, stage_specs, unregister
from tests.helpers import ROOT, TINY_PRETRAIN, training_libraries_imported_by, write_recipe


class ToyOptions(Section):
    width: int = Field(64, ge=8, description="hidden size of the toy model")


def toy_build(cfg: RunConfig):
    """Pretraining of a narrower model: the pretrain stage's parts with the toy section applied."""
    narrowed = cfg.model_copy(update={"model": cfg.model.model_copy(update={"config_overrides": {
        "hidden_size": cfg.toy.width, "intermediate_size": 2 * cfg.toy.width}})})
    return spec_for("pretrain").build(narrowed)


def count_rows(cfg: RunConfig, staging: Path, work: Path) -> dict:
    """A stage that trains nothing: it counts the rows of its data and writes a report."""
    from llmforge.data.sources import load_source

    rows = sum(len(load_source(source).rows) for source in cfg.data.train)
    (staging / "summary.json").write_text(json.dumps({"rows": rows}))
    return {"metrics": {"rows": rows}}


TOY = StageSpec(name="toy", summary="a narrower pretraining, for the test", options=ToyOptions, build=toy_build,
                uses=("eval", "data.train", "data.eval", "data.max_length"), headline=("eval_loss",), samples="none")
COUNT = StageSpec(name="count", summary="counts rows, trains nothing", produce=count_rows, output="report",
                  uses=("data.train",), headline=("rows",))


@pytest.fixture
def extra_stages():
    register(TOY)
    register(COUNT)
    yield
    unregister("toy")
    unregister("count")


def test_a_stage_added_from_a_test_module_runs_everywhere(tmp_path, extra_stages, capsys):
    recipe = write_recipe(tmp_path, stage="toy", toy={"width": 32}, train={"max_steps": 4},
                          checkpoint={"every_steps": 2})
    assert main(["config", str(recipe)]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["toy"] == {"width": 32} and "dpo" not in printed and "adapter" not in printed
    assert "| `toy` | a narrower pretraining, for the test |" in reference() and "`toy.width`" in reference()
    assert main(["train", str(recipe)]) == 0
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "completed" and info["config"]["toy"] == {"width": 32}
    assert json.loads((tmp_path / "run" / "final" / "config.json").read_text())["hidden_size"] == 32

    pipeline = tmp_path / "pipeline.yaml"
    stage = {k: v for k, v in TINY_PRETRAIN.items() if k not in ("stage",)}
    pipeline.write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "chain"),
        "stages": {"narrow": {**stage, "stage": "toy", "toy": {"width": 32}, "train": {"max_steps": 3}},
                   "tally": {"stage": "count", "model": {"name": "${narrow.output}"},
                             "data": {"train": TINY_PRETRAIN["data"]["train"]}}}}, sort_keys=False))
    assert main(["pipeline", str(pipeline)]) == 0
    tally = tmp_path / "chain" / "tally"
    assert json.loads((tally / "final" / "summary.json").read_text()) == {"rows": 400}
    record = json.loads((tally / "run.json").read_text())
    assert record["status"] == "completed" and record["output"] == "report" and record["final_fingerprint"]
    report = (tmp_path / "chain" / "report.md").read_text()
    assert "| narrow | toy | completed |" in report and "| tally | count | completed |" in report
    assert "rows 400" in report
    assert main(["pipeline", str(pipeline)]) == 0  # done: both skipped
    assert "tally: skipped" in capsys.readouterr().out


def test_a_key_the_stage_does_not_read_is_refused(tmp_path, capsys):
    recipe = write_recipe(tmp_path, base={**TINY_PRETRAIN, "stage": "dpo"},
                          data={**TINY_PRETRAIN["data"], "packing": False})
    assert main(["config", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "'data.packing=False'" in err and "not used by stage dpo" in err and "Remove it" in err
    recipe = write_recipe(tmp_path, name="ppo.yaml", base={**TINY_PRETRAIN, "stage": "ppo"},
                          ppo={"reward_functions": ["arithmetic"]}, train={"compile": True})
    assert main(["config", str(recipe)]) == 2
    assert "'train.compile=True'" in capsys.readouterr().err


def test_pipeline_defaults_may_hold_keys_some_stages_do_not_read(tmp_path, capsys):
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "chain"), "defaults": {"data": {"packing": False}, "seed": 3},
        "stages": {"pre": dict(TINY_PRETRAIN), "pairs": {**TINY_PRETRAIN, "stage": "dpo"}}}, sort_keys=False))
    assert main(["pipeline", str(pipeline), "--dry-run"]) == 0, capsys.readouterr().err


def test_every_stage_declares_what_the_pipeline_and_plan_need():
    for spec in stage_specs().values():
        assert spec.summary and spec.formats and spec.headline, spec.name
        if spec.trains:  # the plan's time estimate; a producing stage's time shows as unknown
            assert spec.cost is not None and 0 < spec.cost.efficiency <= 1, spec.name
        if spec.options is not None:
            assert spec.section == spec.name


def test_declarations_and_recipes_load_without_the_training_libraries():
    """Validating a recipe reads every stage's declaration: none may import torch, transformers, TRL, peft or
    datasets at its top (stages/__init__.py), and no shipped recipe's checks may need them."""
    recipes = sorted(str(p) for p in (ROOT / "configs").glob("*/*.yaml")
                     if p.parent.name not in ("pipelines", "sweeps"))
    _, imported = training_libraries_imported_by(
        "from llmforge.config import load_config\nfrom llmforge.config.stages import stage_specs\n"
        f"assert len(stage_specs()) >= 8\nfor recipe in {recipes!r}:\n    load_config(recipe, [])")
    assert len(recipes) >= 15 and imported == []
