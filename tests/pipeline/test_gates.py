"""`require:` gates: parsed without eval(), checked against measured figures, and a failing stage held back."""

from __future__ import annotations

import json

import pytest
import yaml

from llmforge.errors import UserError
from llmforge.pipeline.gates import check, figure, parse, parse_gates
from tests.helpers import PIPELINE_PRETRAIN as PRETRAIN
from tests.helpers import PIPELINE_SFT as SFT
from tests.helpers import run_cli

FIGURES = {("sft", "accuracy"): 0.50, ("ppo", "accuracy"): 0.47, ("ppo", "kl"): 3.0}


def lookup(stage: str, metric: str) -> float | None:
    return FIGURES.get((stage, metric))


def test_conditions_compare_with_numbers_and_other_stages_with_an_offset():
    assert check("ppo", [parse("accuracy >= sft.accuracy - 0.05", "w")], lookup) == []
    failed = check("ppo", [parse("accuracy >= sft.accuracy - 0.02", "w"), parse("kl < 2", "w")], lookup)
    assert failed == ["'accuracy >= sft.accuracy - 0.02': accuracy 0.47 is not >= 0.48",
                      "'kl < 2': kl 3 is not < 2"]
    assert check("ppo", [parse("win_rate > 0.5", "w")], lookup) == ["'win_rate > 0.5': win_rate was not measured"]


def test_a_figure_is_read_from_the_headline_then_against_the_start_then_final_metrics():
    evaluation = {"headline": {"eval_accuracy": 0.4}, "against": {"win_rate": 0.6, "accuracy": 0.9}}
    assert figure(evaluation, {"train_loss": 1.5}, "accuracy") == 0.4
    assert figure(evaluation, {"train_loss": 1.5}, "win_rate") == 0.6
    assert figure(evaluation, {"train_loss": 1.5}, "train_loss") == 1.5
    assert figure(evaluation, {}, "nothing") is None


@pytest.mark.parametrize(("body", "message"), [
    ({"ppo": "accuracy >= __import__('os')"}, "is not a condition"),
    ({"ppo": "accuracy"}, "is not a condition"),
    ({"ppx": "accuracy > 0"}, "no stage 'ppx'"),
    ({"sft": "accuracy >= ppo.accuracy"}, "not a stage before 'sft'"),
    (["accuracy > 0"], "maps stage names"),
])
def test_bad_gates_are_user_errors_naming_the_stage(body, message):
    with pytest.raises(UserError, match=message):
        parse_gates(body, "p.yaml", ["sft", "ppo"])


def test_a_stage_that_fails_its_gate_is_marked_failed_and_what_starts_from_it_does_not_run(tmp_path):
    """Exit 3, the report and pipeline.json say why; a rerun with a gate it passes runs the held-back stage."""
    after = {**SFT, "model": {"name": "${sft.output}"}}
    body = {"output_dir": str(tmp_path / "out"), "defaults": {"seed": 3},
            "require": {"sft": "train_loss < 0"},
            "stages": {"pretrain": PRETRAIN, "sft": SFT, "again": after}}
    recipe = tmp_path / "p.yaml"
    recipe.write_text(yaml.safe_dump(body, sort_keys=False))
    held = run_cli("pipeline", str(recipe))
    assert held.returncode == 3, held.stderr[-3000:]
    assert "'train_loss < 0': train_loss" in held.stderr and "Traceback" not in held.stderr
    state = {row["name"]: row for row in json.loads((tmp_path / "out" / "pipeline.json").read_text())["stages"]}
    assert state["sft"]["status"] == "failed" and state["again"]["status"] == "blocked"
    assert not (tmp_path / "out" / "again").exists()
    assert "failed (failed require: 'train_loss < 0'" in (tmp_path / "out" / "report.md").read_text()
    passed = run_cli("pipeline", str(recipe), "require.sft=train_loss > 0")
    assert passed.returncode == 0, passed.stderr[-3000:]
    assert (tmp_path / "out" / "again" / "final").is_dir()


def test_seeds_run_the_recipe_once_per_seed_and_tabulate_them(tmp_path):
    body = {"output_dir": str(tmp_path / "out"), "stages": {"pretrain": PRETRAIN, "sft": SFT}}
    recipe = tmp_path / "p.yaml"
    recipe.write_text(yaml.safe_dump(body, sort_keys=False))
    result = run_cli("pipeline", str(recipe), "--seeds", "1,2", "pretrain.train.max_steps=3")
    assert result.returncode == 0, result.stderr[-3000:]
    for seed in (1, 2):
        run = json.loads((tmp_path / "out" / f"seed-{seed}" / "pretrain" / "run.json").read_text())
        assert run["config"]["seed"] == seed and run["config"]["train"]["max_steps"] == 3
    table = (tmp_path / "out" / "seeds.md").read_text()
    assert "| stage | figure | seed 1 | seed 2 | mean (range) |" in table


def test_a_bound_computed_in_floats_compares_as_written():
    figures = {("sft", "accuracy"): 0.1, ("ppo", "accuracy"): 0.3}  # 0.1 + 0.2 is 0.30000000000000004 in floats
    assert check("ppo", [parse("accuracy >= sft.accuracy + 0.2", "w")], lambda s, m: figures.get((s, m))) == []
