"""DPO: learns to rank held-out pairs and answer held-out problems, uses its start as reference, resumes exactly.

Calibration (float32, 2-core Xeon with AMX): from the suite's 150-step SFT model (`sft_mid`, held-out exact
match 0.195), DPO + RPO (sft_weight 1, 200 steps on single digits) reaches 0.80 with the implicit reward
ranking held-out pairs and a margin of 0.54. The tiny-rlhf pipeline's DPO stage gains -0.015 to +0.30 over
seeds 42, 1, 2, 3 (README), from SFT starts of 0.06 to 0.71. Bounds: exact match start + 0.08, pair accuracy
0.55, margin 0.1.
"""

from __future__ import annotations

import pytest

from llmforge.config import load_config
from llmforge.stages import run as run_stage
from tests.helpers import (
    DPO,
    assert_resumes_exactly,
    lora_steps,
    quick_resume_recipe,
    start_accuracy,
    write_recipe,
)

pytestmark = pytest.mark.slow

ACCURACY_GAIN, REWARD_ACCURACY_BOUND, MARGIN_BOUND = 0.08, 0.55, 0.1
def test_dpo_raises_held_out_accuracy_and_ranks_held_out_pairs(sft_mid, tmp_path):
    before = start_accuracy(sft_mid)
    outcome = run_stage(load_config(write_recipe(tmp_path, base=DPO, model={"name": str(sft_mid)})))
    assert outcome.metrics["eval_accuracy"] >= before + ACCURACY_GAIN
    assert outcome.metrics["eval_rewards/accuracies"] >= REWARD_ACCURACY_BOUND
    assert outcome.metrics["eval_rewards/margins"] >= MARGIN_BOUND


def test_lora_dpo_starts_at_its_reference_without_a_second_copy(sft_short, tmp_path):
    outcome, first = lora_steps(tmp_path, DPO, sft_short)
    # step 1's rewards are log-ratios against the reference before any update: zero when the
    # reference is the base with the (zero-initialised) adapters disabled
    assert first["step"] == 1 and first["rewards/chosen"] == 0.0 and first["rewards/rejected"] == 0.0
    assert (outcome.output_dir / "final" / "adapter_model.safetensors").is_file()
    assert not (outcome.output_dir / "final" / "ref").exists()


def test_dpo_resumes_exactly_after_sigkill(tmp_path):
    assert_resumes_exactly(tmp_path, quick_resume_recipe(DPO), kill_after_checkpoint=10)
