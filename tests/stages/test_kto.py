"""KTO: learns from answers judged one by one (preference pairs unpaired), resumes exactly after SIGKILL.

Calibration (CPU, fixed seeds; `llmforge train configs/kto/tiny.yaml`): from the tiny-rlhf pipeline's 150-step
SFT model, 300 steps at lr 2e-4 separate held-out answers by the implicit reward (policy/reference log-ratio):
right answers -0.17, near misses -0.64, margin 0.475 (0 at the start); held-out exact match 0.455 -> 0.47,
i.e. flat, like plain DPO without an NLL term (lr 5e-5: margin 0.21, 0.415). Before the unpaired rows were
shuffled the first 60 steps saw only right answers and the next only wrong ones: exact match fell to 0.0.
From the test suite's `sft_mid` (200 steps): margin 0.22 (right -0.21, near misses -0.43), exact match
0.04 -> 0.12. Bound here: held-out margin 0.1, and the mean reward of right answers above that of near misses.
"""

from __future__ import annotations

import json

import pytest

from llmforge.config import load_config
from llmforge.config.schema import DataSource
from llmforge.data.formats import graded_prompts
from llmforge.data.sources import load_source
from llmforge.eval.exact_match import exact_match
from llmforge.inference import load_for_inference
from llmforge.stages import run as run_stage
from tests.helpers import (
    DPO,
    assert_resumes_exactly,
    lora_steps,
    metric_lines,
    quick_resume_recipe,
    run_cli,
    write_recipe,
)

MARGIN_BOUND = 0.1
# the DPO test's data and schedule, KTO's options and learning rate
KTO = {**{key: value for key, value in DPO.items() if key != "dpo"}, "stage": "kto", "kto": {"beta": 0.1},
       "train": {**DPO["train"], "lr": 2.0e-4}}


@pytest.mark.slow
def test_kto_separates_held_out_right_and_wrong_answers(sft_mid, tmp_path):
    outcome = run_stage(load_config(write_recipe(tmp_path, base=KTO, model={"name": str(sft_mid)})))
    m = outcome.metrics
    assert m["eval_rewards/chosen"] > m["eval_rewards/rejected"]
    assert m["eval_rewards/margins"] >= MARGIN_BOUND
    assert "eval_accuracy" in m  # exact match on the prompt rows is measured and reported
    prompts = load_source(DataSource(**KTO["data"]["eval"][1]))
    published = exact_match(load_for_inference(str(outcome.output_dir)), graded_prompts(prompts.rows, prompts.label))
    assert m["eval_accuracy"] == published["accuracy"]  # ... and is the published model's
    # every logging window saw both kinds of answer: the unpaired rows are shuffled
    lines = [line for line in metric_lines(outcome.output_dir, "loss") if "logps/chosen" in line]
    assert all(line["logps/chosen"] < 0 and line["logps/rejected"] < 0 for line in lines)
    # TRL logs a margin only for batches holding both kinds: in row order (blocks of one kind) none would
    assert lines and all("rewards/margins" in line and "logps/rejected" in line for line in lines)


@pytest.mark.slow
def test_kto_resumes_exactly_after_sigkill(tmp_path):
    assert_resumes_exactly(tmp_path, quick_resume_recipe(KTO), kill_after_checkpoint=10)


def test_kto_options_are_checked_before_anything_loads(tmp_path):
    recipe = write_recipe(tmp_path, base=KTO, model={"name": "tiny-llama"}, kto={"loss_type": "sigmoid"})
    result = run_cli("train", str(recipe))
    assert result.returncode == 2 and "kto.loss_type" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_lora_kto_starts_at_its_reference_without_a_second_copy(sft_short, tmp_path):
    outcome, first = lora_steps(tmp_path, KTO, sft_short)
    # step 1's rewards are log-ratios against the reference before any update: zero when the reference is
    # the base with the (zero-initialised) adapters disabled
    assert first["step"] == 1 and first["logps/chosen"] < 0  # the batch had right answers to score
    assert first["rewards/chosen"] == 0.0
    assert (outcome.output_dir / "final" / "adapter_model.safetensors").is_file()
    run = json.loads((outcome.output_dir / "run.json").read_text())
    assert [p["role"] for p in run["parents"]] == ["model"]
