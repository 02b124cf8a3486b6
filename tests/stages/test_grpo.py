"""GRPO: verifiable rewards raise the reward and the model still answers; reward models plug in; bad recipes exit 2.

Calibration (float32, 2-core Xeon; its own kernels, and held to AVX2 with ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2; the recipe below from the `sft_mid` fixture): that start answers 0.335 of the
held-out problems as the suite builds it (pytest -n 2, as CI; 0.135 or 0.21 built alone with these kernels).
Over ten runs (beta 0 and 0.04, lr 1e-4 and 2e-4, seeds 42 and 7, the three starts) the mean sampled reward
was higher in the last quarter of the logged steps than in the first every time (+0.006 to +0.06; the
suite's: 0.403 -> 0.461): GRPO at this size learns slowly, so the reward bound is a direction, not a size.
Held-out greedy exact match moved -0.13 to +0.03: from the suite's stronger start it fell (0.335 -> 0.205
without a KL term, -> 0.235 with beta 0.04), so keeping held-out accuracy is not what RL on the training
problems delivers here (README: the same for PPO in the lifecycle). Bounds: reward last quarter > first quarter;
held-out exact match stays above 0.05 (the model still answers the task; the lowest seen was 0.125).
"""

from __future__ import annotations

import pytest

from llmforge.config import load_config
from llmforge.rl.reward_functions import arithmetic, final_number
from llmforge.stages import run as run_stage
from tests.helpers import DIGITS, metric_lines, run_cli, start_accuracy, write_recipe

ANSWERS_STILL = 0.05  # held-out exact match that shows the model still answers the task
GRPO = {
    "stage": "grpo",
    "seed": 42,
    "data": {"train": [{"name": "arithmetic-prompts", "options": {"num_samples": 20000, **DIGITS}}],
             "eval": [{"name": "arithmetic-prompts", "split": "test", "options": DIGITS}]},
    "grpo": {"num_generations": 8, "max_new_tokens": 8, "reward_functions": ["arithmetic"], "beta": 0.04},
    "train": {"max_steps": 200, "micro_batch_size": 32, "lr": 2.0e-4, "warmup_ratio": 0.05},
    "eval": {"every_steps": 50},
    "checkpoint": {"every_steps": 1000},
    "logging": {"every_steps": 10},
}


def test_arithmetic_reward_grades_plain_and_chat_completions():
    completions = ["7", [{"role": "assistant", "content": "It is 12."}], "no idea", "-3"]
    assert arithmetic(completions, answer=["7", "12", "5", "3"]) == [1.0, 1.0, 0.0, 0.0]


def test_final_number_reward_reads_gsm8k_answers():
    completions = ["3 apples and 4 more make 7", "It is 1,250.", "so 8 - 2 = 6, then 12"]
    assert final_number(completions, answer=["Add them.\n#### 7", "1250", "#### 6"]) == [1.0, 1.0, 0.0]


@pytest.mark.slow
def test_grpo_raises_its_reward_and_still_answers_held_out_problems(sft_mid, tmp_path):
    before = start_accuracy(sft_mid)
    outcome = run_stage(load_config(write_recipe(tmp_path, base=GRPO, model={"name": str(sft_mid)})))
    rewards = [line["reward"] for line in metric_lines(outcome.output_dir, "reward")]
    quarter = len(rewards) // 4
    found = {"before": before, "after": outcome.metrics["eval_accuracy"], "rewards": rewards}
    assert sum(rewards[-quarter:]) / quarter > sum(rewards[:quarter]) / quarter, found
    assert outcome.metrics["eval_accuracy"] >= ANSWERS_STILL, found
    curve = [(line["step"], line["eval_accuracy"]) for line in metric_lines(outcome.output_dir, "eval_accuracy")]
    assert sorted({step for step, _ in curve}) == [50, 100, 150, 200], curve  # held-out skill during training
    assert curve[-1][1] == outcome.metrics["eval_accuracy"]  # the last point is the published model's figure


@pytest.mark.slow
def test_grpo_combines_a_reward_model_with_verifiable_rewards(tmp_path):
    from tests.helpers import RM

    rm = write_recipe(tmp_path, name="rm.yaml", base=RM, model={"name": "tiny-llama"}, adapter={"type": "none"},
                      output_dir=str(tmp_path / "rm"), train={"max_steps": 4, "micro_batch_size": 8})
    run_stage(load_config(rm))
    recipe = write_recipe(tmp_path, base=GRPO, model={"name": "tiny-llama"},
                          grpo={"reward_model": str(tmp_path / "rm"), "reward_weights": [0.5, 1.0]},
                          train={"max_steps": 2, "micro_batch_size": 16}, logging={"every_steps": 1})
    outcome = run_stage(load_config(recipe))
    line = metric_lines(outcome.output_dir, "reward")[0]
    assert {"rewards/arithmetic/mean"} <= line.keys() and any(k.startswith("rewards/") and "arithmetic" not in k
                                                             and k.endswith("/mean") for k in line)


@pytest.mark.parametrize(("change", "message"), [
    ({"grpo": {"reward_functions": []}}, "needs something to reward"),
    ({"grpo": {"reward_weights": [1.0, 2.0]}}, "2 weights for 1 rewards"),
    ({"grpo": {"reward_functions": ["arithmetics"]}}, "arithmetic"),
    ({"grpo": {"num_generations": 6}}, "must divide the completions per step"),
])
def test_bad_grpo_recipes_exit_2(tmp_path, change, message):
    recipe = write_recipe(tmp_path, base=GRPO, model={"name": "tiny-llama"}, **change)
    result = run_cli("train", str(recipe))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
