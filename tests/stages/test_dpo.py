"""DPO: raises held-out accuracy over its SFT start, uses the start as reference, resumes exactly.

Calibration (CPU, fixed seeds): the SFT model learnt single-digit problems; DPO + RPO (sft_weight 1) on
pairs with operands up to 20 raises held-out exact match on those from 0.195 to 0.29 (300 steps,
configs/dpo/tiny.yaml). From an SFT model stopped early on single digits the outcome depends on the start
(0.06 -> 0.32 with the recipe's seeds, 0.04 -> 0.025 with this suite's), so the test uses the first setting.
Bound: start + 0.05.
"""

from __future__ import annotations

import pytest

from llmforge.config import load_config
from llmforge.engine.runner import run_stage
from tests.helpers import DIGITS, assert_resumes_exactly, metric_lines, run_cli, write_recipe

pytestmark = pytest.mark.slow

ACCURACY_GAIN = 0.05
TWO_DIGITS = {"max_operand": 20}
DPO = {
    "stage": "dpo",
    "seed": 42,
    "data": {"train": [{"name": "arithmetic-pref", "options": {"num_samples": 8000, **DIGITS}}],
             "eval": [{"name": "arithmetic-pref", "split": "test", "options": DIGITS},
                      {"name": "arithmetic-prompts", "split": "test", "options": DIGITS}], "max_length": 64},
    "dpo": {"beta": 0.1, "sft_weight": 1.0},
    "train": {"max_steps": 200, "micro_batch_size": 16, "lr": 5.0e-4, "warmup_ratio": 0.05},
    "checkpoint": {"every_steps": 1000},
    "logging": {"every_steps": 10},
}


def start_accuracy(model, options: dict | None = None) -> float:
    from llmforge.config.schema import DataSource
    from llmforge.eval import evaluate

    if options:
        source = DataSource(name="arithmetic-prompts", split="test", options=options)
        return evaluate(str(model), source)["eval_accuracy"]
    result = run_cli("eval", str(model), "--dataset", "arithmetic-prompts", "--split", "test")
    assert result.returncode == 0, result.stderr[-2000:]
    import json

    return json.loads(result.stdout.strip().splitlines()[-1])["eval_accuracy"]


def test_dpo_raises_held_out_accuracy(sft_full, tmp_path):
    before = start_accuracy(sft_full, TWO_DIGITS)
    data = {**DPO["data"], "train": [{"name": "arithmetic-pref", "options": {"num_samples": 8000, **TWO_DIGITS}}],
            "eval": [{"name": "arithmetic-pref", "split": "test", "options": TWO_DIGITS},
                     {"name": "arithmetic-prompts", "split": "test", "options": TWO_DIGITS}]}
    recipe = write_recipe(tmp_path, base=DPO, model={"name": str(sft_full)}, data=data, train={"max_steps": 300})
    outcome = run_stage(load_config(recipe))
    assert outcome.metrics["eval_accuracy"] >= before + ACCURACY_GAIN
    assert outcome.metrics["eval_rewards/accuracies"] > 0.5 and outcome.metrics["eval_rewards/margins"] > 0


def test_lora_dpo_starts_at_its_reference_without_a_second_copy(sft_short, tmp_path):
    recipe = write_recipe(tmp_path, base=DPO, model={"name": str(sft_short)},
                          adapter={"type": "lora", "r": 8, "alpha": 16},
                          train={"max_steps": 3, "micro_batch_size": 8}, logging={"every_steps": 1},
                          eval={"max_samples": 8})
    outcome = run_stage(load_config(recipe))
    first = metric_lines(outcome.output_dir, "rewards/chosen")[0]
    # step 1's rewards are log-ratios against the reference before any update: zero when the
    # reference is the base with the (zero-initialised) adapters disabled
    assert first["step"] == 1 and first["rewards/chosen"] == 0.0 and first["rewards/rejected"] == 0.0
    assert (outcome.output_dir / "final" / "adapter_model.safetensors").is_file()
    assert not (outcome.output_dir / "final" / "ref").exists()


def test_dpo_resumes_exactly_after_sigkill(tmp_path):
    recipe = {**DPO, "model": {"name": "tiny-llama"},
              "data": {**DPO["data"], "train": [{"name": "arithmetic-pref", "options": {"num_samples": 400}}]},
              "train": {"max_steps": 20, "micro_batch_size": 8, "lr": 1.0e-3},
              "checkpoint": {"every_steps": 10}, "logging": {"every_steps": 5}, "eval": {"max_samples": 8}}
    assert_resumes_exactly(tmp_path, recipe, kill_after_checkpoint=10)
