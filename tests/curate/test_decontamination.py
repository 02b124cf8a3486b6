"""Why decontamination matters, measured: an SFT whose training data holds half of the test problems scores
higher on that half than the same SFT trained on the data `stage: curate` decontaminated, and the gap is gone
on the other, clean half, which neither run saw.

The task: two-digit arithmetic (operands up to 19), whose held-out problems the tiny model mostly cannot solve
by generalising in 200 steps, so what it gets right on the planted half it learnt there. The planted rows are
the held-out problems as SFT rows, each repeated; the curated run drops exactly them (decontamination only:
deduplication off, so the two runs train on the same other rows).

Calibration over seeds 11-14 (`python -m pytest tests/curate/test_decontamination.py`, each seed's four
accuracies in docs/data-curation.md; 2-core Xeon, float32): contamination lifts the planted half by +0.41 to
+0.61 and the clean half by -0.11 to +0.23 (mean +0.08: the planted problems' neighbours, b + a beside a + b,
gain a little too), the planted half's lift exceeding the clean half's by 0.33 to 0.56. Bounds: planted lift
>= 0.30, planted lift - clean lift >= 0.20, |clean lift| <= 0.30.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers import write_recipe

OPERANDS = {"max_operand": 19}
REPEATS = 8  # each planted test row appears this many times


def held_out_halves() -> tuple[list[dict], list[dict]]:
    """The test problems as prompt rows (each prompt style once), split in two halves by problem."""
    from llmforge.config.schema import DataSource
    from llmforge.data.sources import load_source

    rows = list(load_source(DataSource(name="arithmetic-prompts", split="test",
                                       options={**OPERANDS, "num_samples": 400})).rows)
    problems = sorted({problem(row) for row in rows})
    planted = {key for index, key in enumerate(problems) if index % 2 == 0}
    halves: tuple[list[dict], list[dict]] = ([], [])
    for row in rows:
        halves[0 if problem(row) in planted else 1].append(row)
    return halves


def problem(row: dict) -> tuple[str, ...]:
    """The problem a prompt row asks, whatever its wording: its operands and operator."""
    return tuple(re.findall(r"\d+|[+-]", row["prompt"][-1]["content"]))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def accuracy(run: Path, rows: list[dict]) -> float:
    from llmforge.data.formats import graded_prompts
    from llmforge.eval.exact_match import exact_match
    from llmforge.inference import load_for_inference

    return exact_match(load_for_inference(str(run / "final")), graded_prompts(rows, "test"))["accuracy"]


def contamination_runs(pretrained: Path, folder: Path, seed: int) -> dict[str, float]:
    from llmforge.config import load_config
    from llmforge.config.schema import DataSource
    from llmforge.data.sources import load_source
    from llmforge.stages import run as run_stage

    planted, clean = held_out_halves()
    train = list(load_source(DataSource(name="arithmetic-sft", options={**OPERANDS, "num_samples": 3000})).rows)
    leaked = [{"messages": row["prompt"] + [{"role": "assistant", "content": row["answer"]}]} for row in planted]
    raw = write_jsonl(folder / "raw.jsonl", train + leaked * REPEATS)
    tests = write_jsonl(folder / "planted.jsonl", planted)
    curate = write_recipe(folder, name="curate.yaml", base={
        "stage": "curate", "model": {"name": "tiny-llama"}, "data": {"train": [{"path": str(raw)}]},
        "curate": {"exact_dedup": False, "near_dedup": {"enabled": False},
                   "decontaminate": {"against": [{"path": str(tests), "format": "prompt"}]}}},
        output_dir=str(folder / "curated"))
    run_stage(load_config(curate))
    found = {}
    for name, data in (("contaminated", {"path": str(raw), "format": "messages"}),
                       ("decontaminated", {"path": str(folder / "curated")})):
        recipe = write_recipe(folder, name=f"{name}.yaml", base={
            "stage": "sft", "seed": seed, "model": {"name": str(pretrained)},
            "data": {"train": [data], "eval": [], "max_length": 64, "packing": True},
            "train": {"max_steps": 200, "micro_batch_size": 32, "lr": 3.0e-3, "warmup_ratio": 0.05},
            "checkpoint": {"every_steps": 1000}, "logging": {"every_steps": 50}}, output_dir=str(folder / name))
        run = run_stage(load_config(recipe)).output_dir
        found[f"{name}_planted"], found[f"{name}_clean"] = accuracy(run, planted), accuracy(run, clean)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12])
def test_contamination_inflates_the_planted_half_only(pretrained, tmp_path, seed):
    found = contamination_runs(pretrained, tmp_path, seed)
    inflation = found["contaminated_planted"] - found["decontaminated_planted"]
    clean_gap = found["contaminated_clean"] - found["decontaminated_clean"]
    assert inflation >= 0.30, found  # calibrated: see the module docstring
    assert inflation - clean_gap >= 0.20, found
    assert abs(clean_gap) <= 0.30, found
