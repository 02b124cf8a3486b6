"""The memory plan against a recorded run of the size ladder (`llmforge bench --only sizes --json`): every row's
prediction, made now by the code as it stands, within +-20% of the peak resident memory that run measured.
The rows that switch llmforge's allocator setting off (an environment variable, to show what it saves) are
outside the plan's promise: it plans the process as llmforge sets it up."""

from __future__ import annotations

import json

import pytest

from llmforge.bench.sizes import SIZES, ladder, recipe, savers
from llmforge.config.compose import validate_dict
from llmforge.config.schema import ModelConfig
from llmforge.memory import Budget, plan
from llmforge.memory.shapes import model_config
from tests.helpers import ROOT

RECORDED = ROOT / "docs" / "bench" / "sizes.json"
BOUND = 0.20


def recorded_rows() -> tuple[dict, list[dict]]:
    result = json.loads(RECORDED.read_text())
    return result, [row for row in result["rows"] if row["group"] == "sizes"]


@pytest.fixture(scope="module")
def starts(tmp_path_factory) -> dict[str, str]:
    """The ladder's starting models by size: the presets whose saved weights they were, and a config-only folder
    for each 'copy' (a second model under another name: only its shape is read)."""
    folder = tmp_path_factory.mktemp("starts")
    found: dict[str, str] = dict(SIZES)
    for size, preset in SIZES.items():
        copy = folder / size
        model_config(ModelConfig(name=preset)).save_pretrained(copy)
        found[f"{size} copy"] = str(copy)
    return found


def test_the_recording_holds_every_ladder_row():
    _, rows = recorded_rows()
    measured = {row["name"] for row in rows}
    missing = [r.name for r in ladder() + savers() if r.name not in measured]
    assert not missing, missing


def test_the_plan_predicts_every_recorded_row_within_20_percent(tmp_path, starts):
    result, rows = recorded_rows()
    rungs = {r.name: r for r in ladder() + savers()}
    available = Budget(result["sizes_available_bytes"], "recorded")
    off = []
    for row in rows:
        if rungs[row["name"]].environment:
            continue
        built = recipe(rungs[row["name"]], tmp_path, starts)
        planned = plan(validate_dict(built), "cpu", available)
        ratio = planned.estimate.peak / 2**20 / row["peak_mib"]
        if abs(ratio - 1) > BOUND:
            off.append((row["name"], round(ratio, 3)))
    assert not off, off
