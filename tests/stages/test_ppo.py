"""PPO end to end: it learns on the built-in task, resumes exactly after SIGKILL, runs LoRA without a
second model copy, takes a reward model, and refuses bad recipes with exit 2.

Calibration (CPU, fixed seeds; `llmforge train configs/ppo/tiny.yaml` with the overrides below): from SFT
models stopped early, 100 PPO steps of 32 prompts with the verifiable arithmetic reward (lr 1e-4) took held-out
greedy exact match 0.055 -> 0.175 on one and 0.04 -> 0.06-0.1 on the test suite's (seeds, value_lr 1e-3, 4
epochs); mean sampled reward rises (0.1 -> 0.16, 0.19 -> 0.29) and KL to the start stays at 0.1-0.5 nats per
completion. Longer or harder optimisation (200 steps, or 4 epochs at lr 1e-4) raised the sampled reward but
dropped held-out greedy accuracy to 0.0: gains on this 1M-parameter task are small and start-dependent.
The tiny-rlhf pipeline over 4 seeds agrees: PPO raises the reward of its own samples (+0.03 to +0.10) but
not held-out exact match (-0.015 to +0.035). Re-measured with the recipe below (seeds 42 and 7; this Xeon's
kernels and AVX2 kernels, ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2; and as the suite builds its start, pytest -n 2 as
CI): the 100-step SFT start answers 0.22 in the suite (0.27 or 0.12 built alone); held-out exact match moved
-0.115 (the suite's start: 0.22 -> 0.105), -0.03, -0.015, +0.06, +0.06; the reward rose from the first
quarter to the last by +0.03 to +0.11; mean KL 0.13-0.21. Keeping held-out accuracy is not what PPO on the
training problems delivers at this size. Bounds: reward higher in the last quarter than the first, mean KL
below 1, held-out exact match above 0.05 (the model still answers the task; the lowest seen was 0.105).
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from llmforge.config import load_config
from llmforge.stages import run as run_stage
from tests.helpers import (
    DIGITS,
    assert_resumes_exactly,
    deep_update,
    final_weights,
    metric_lines,
    run_cli,
    start_accuracy,
    write_recipe,
)

ANSWERS_STILL = 0.05  # held-out exact match that shows the model still answers the task
MAX_KL = 1.0
PPO = {
    "stage": "ppo",
    "seed": 42,
    "data": {"train": [{"name": "arithmetic-prompts", "options": {"num_samples": 20000, **DIGITS}}],
             "eval": [{"name": "arithmetic-prompts", "split": "test", "options": DIGITS}],
             "max_length": 64},
    "ppo": {"reward_functions": ["arithmetic"], "rollout_batch_size": 32, "ppo_epochs": 2, "max_new_tokens": 8,
            "value_lr": 1.0e-3},
    "train": {"max_steps": 100, "micro_batch_size": 16, "lr": 1.0e-4, "warmup_ratio": 0.05},
    "checkpoint": {"every_steps": 1000},
    "logging": {"every_steps": 5},
}
# A few seconds: the tiny preset, 8 prompts a step.
QUICK = {"model": {"name": "tiny-llama"}, "ppo": {"rollout_batch_size": 8},
         "train": {"max_steps": 6, "micro_batch_size": 4, "grad_accum_steps": 2},
         "checkpoint": {"every_steps": 2, "keep_last": 2}, "logging": {"every_steps": 1}}
LOGGED = {"loss", "reward", "kl", "kl_coef", "entropy", "policy_loss", "value_loss", "clipfrac", "approx_kl",
          "response_length", "time/generation", "time/training", "rewards/arithmetic"}


def quick(tmp_path, **changes):
    from tests.helpers import deep_update

    return write_recipe(tmp_path, base=deep_update(PPO, QUICK), **changes)


@pytest.mark.slow
def test_ppo_raises_its_reward_with_bounded_kl_and_still_answers_held_out_problems(sft_short, tmp_path):
    before = start_accuracy(sft_short)
    outcome = run_stage(load_config(write_recipe(tmp_path, base=PPO, model={"name": str(sft_short)})))
    lines = metric_lines(outcome.output_dir, "reward")
    assert lines[0].keys() >= LOGGED
    rewards = [line["reward"] for line in lines]
    found = {"before": before, "after": outcome.metrics["eval_accuracy"], "rewards": rewards}
    quarter = len(rewards) // 4
    assert sum(rewards[-quarter:]) / quarter > sum(rewards[:quarter]) / quarter, found
    assert outcome.metrics["eval_accuracy"] >= ANSWERS_STILL, found
    assert sum(line["kl"] for line in lines) / len(lines) < MAX_KL


@pytest.mark.slow
def test_ppo_resumes_exactly_after_sigkill(tmp_path):
    from tests.helpers import deep_update

    assert_resumes_exactly(tmp_path, deep_update(PPO, QUICK), kill_after_checkpoint=2)


def test_lora_ppo_uses_the_base_as_reference_and_saves_an_adapter(tmp_path):
    outcome = run_stage(load_config(quick(tmp_path, adapter={"type": "lora", "r": 8}, train={"max_steps": 2})))
    first = metric_lines(outcome.output_dir, "kl")[0]
    assert first["kl"] == 0.0  # step 1 samples from the start, and the reference is that start
    assert first.keys() >= LOGGED
    final = outcome.output_dir / "final"
    assert (final / "adapter_config.json").is_file() and not (final / "model.safetensors").exists()
    adapter = load_file(final / "adapter_model.safetensors")
    assert adapter and all("lora_" in key for key in adapter)
    run = json.loads((outcome.output_dir / "run.json").read_text())
    assert [p["role"] for p in run["parents"]] == ["model", "value_model"]


@pytest.mark.slow
def test_ppo_scores_with_a_reward_model_and_starts_the_value_model_from_it(tmp_path):
    from tests.helpers import RM

    rm = write_recipe(tmp_path, name="rm.yaml", base=RM, model={"name": "tiny-llama"}, adapter={"type": "none"},
                      output_dir=str(tmp_path / "rm"), train={"max_steps": 4, "micro_batch_size": 8})
    run_stage(load_config(rm))
    stats = json.loads((tmp_path / "rm" / "final" / "reward_stats.json").read_text())
    outcome = run_stage(load_config(quick(tmp_path, ppo={"reward_model": str(tmp_path / "rm"),
                                                         "reward_weights": [1.0, 0.5]}, train={"max_steps": 2})))
    line = metric_lines(outcome.output_dir, "reward")[0]
    assert {"rewards/reward_model", "rewards/arithmetic"} <= line.keys()
    run = json.loads((outcome.output_dir / "run.json").read_text())
    assert [p["role"] for p in run["parents"]] == ["model", "reward_model", "value_model"]
    assert run["parents"][1]["run_dir"] == run["parents"][2]["run_dir"] == str((tmp_path / "rm").resolve())
    assert run["data"]["reward_stats"] == stats
    # the value model started as the reward model: before any update, its value at the last token of a
    # completion is the reward model's raw score of it
    assert line["value_mean"] != 0.0


@pytest.mark.parametrize(("change", "message"), [
    ({"ppo": {"reward_functions": []}}, "needs something to reward"),
    ({"ppo": {"rollout_batch_size": 12}}, "must be a multiple of the mini-batch"),
    ({"adapter": {"type": "freeze"}}, "freeze is not offered for ppo"),
    ({"ppo": {"kl_estimator": "k4"}}, "kl_estimator"),
    ({"data": {"max_length": 8}}, "every prompt is longer than"),
    ({"ppo": {"advantage_estimator": "rloo"}}, "set ppo.samples_per_prompt to 2 or more"),
    ({"train": {"compile": True}}, "ppo runs its own loop"),
])
def test_bad_ppo_recipes_exit_2(tmp_path, change, message):
    result = run_cli("train", str(quick(tmp_path, **change)))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_value_model_must_read_the_policys_token_ids():
    from llmforge.errors import UserError
    from llmforge.stages.ppo import same_vocabulary

    class Vocabulary:
        def __init__(self, vocab):
            self.vocab = vocab

        def get_vocab(self):
            return self.vocab

    policy = Vocabulary({"a": 0, "b": 1})
    same_vocabulary(policy, Vocabulary({"a": 0, "b": 1, "<pad>": 2}), "rm", "value_model")  # an added pad is fine
    with pytest.raises(UserError, match="different tokenizer"):
        same_vocabulary(policy, Vocabulary({"b": 0, "a": 1}), "rm", "value_model")


def test_checkpoint_holds_policy_value_optimizer_and_loop_state(tmp_path):
    outcome = run_stage(load_config(quick(tmp_path, train={"max_steps": 2})))
    checkpoint = outcome.output_dir / "checkpoints" / "checkpoint-2"
    names = {p.name for p in checkpoint.iterdir()}
    assert {"model.safetensors", "optimizer.bin", "random_states_0.pkl", "llmforge_complete.json"} <= names
    weights = load_file(checkpoint / "model.safetensors")
    assert any(k.startswith("policy.") for k in weights) and any(k.startswith("value.") for k in weights)
    # the loop's own state is JSON, not accelerate's custom pickles (which it unpickles with weights_only=False)
    assert not any(n.startswith("custom_checkpoint_") for n in names)
    progress = json.loads((checkpoint / "ppo_state.json").read_text())
    assert progress["step"] == 2 and {"kl", "scheduler", "selection"} <= progress.keys()


def test_value_head_on_the_policy_shares_its_backbone_and_learns(tmp_path):
    # the untrained preset never answers right, but it rarely stops: the EOS penalty gives returns to learn
    outcome = run_stage(load_config(quick(tmp_path, ppo={"value_model": "policy", "missing_eos_penalty": 1.0},
                                          train={"max_steps": 4})))
    lines = metric_lines(outcome.output_dir, "value_mean")
    assert lines[0]["value_mean"] == 0.0 and lines[-1]["value_mean"] != 0.0  # the head starts at zero, then learns
    weights = load_file(outcome.output_dir / "checkpoints" / "checkpoint-4" / "model.safetensors")
    assert {"value_head.weight", "value_head.bias"} <= weights.keys()
    assert not any(k.startswith("value.") for k in weights)
    run = json.loads((outcome.output_dir / "run.json").read_text())
    assert [p["role"] for p in run["parents"]] == ["model"]
    assert "value_head" not in str(load_file(outcome.output_dir / "final" / "model.safetensors").keys())


def test_grad_norm_is_the_mean_over_optimizer_steps_not_diluted_by_accumulation(tmp_path):
    one = run_stage(load_config(quick(tmp_path, output_dir=str(tmp_path / "one"), train={"max_steps": 1})))
    # the same optimizer steps, each seen as 2 micro-batches instead of 1: same norms, same mean
    acc = run_stage(load_config(quick(tmp_path, name="acc.yaml", output_dir=str(tmp_path / "acc"),
                                      train={"max_steps": 1, "micro_batch_size": 8, "grad_accum_steps": 1})))
    a, b = metric_lines(one.output_dir, "grad_norm")[0], metric_lines(acc.output_dir, "grad_norm")[0]
    assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-3)


def test_rloo_uses_the_prompts_other_samples_instead_of_a_value_model(tmp_path):
    recipe = quick(tmp_path, ppo={"advantage_estimator": "rloo", "samples_per_prompt": 2})
    outcome = run_stage(load_config(recipe))
    lines = metric_lines(outcome.output_dir, "reward")
    assert len(lines) == 6 and all("value_loss" not in line for line in lines)
    assert all(torch.isfinite(torch.tensor(line["policy_loss"])) for line in lines)
    run = json.loads((outcome.output_dir / "run.json").read_text())
    assert [p["role"] for p in run["parents"]] == ["model"]  # no value model loaded


def test_best_checkpoint_and_early_stopping_survive_a_sigkill(tmp_path):
    """The untrained preset answers none of the held-out problems, so eval_accuracy is 0.0 at every evaluation:
    the first evaluation (step 2) stays the best, patience 2 runs out at step 6 of 20, and final/ holds step 2's
    policy. Killed after checkpoint-4 (best and patience count in it), the rerun ends the same way."""
    recipe = deep_update(deep_update(PPO, QUICK), {
        "train": {"max_steps": 20, "early_stopping": {"patience": 2}}, "eval": {"every_steps": 2},
        "data": {"eval": [{"name": "arithmetic-prompts", "split": "test", "options": {**DIGITS, "num_samples": 16}}]},
        "checkpoint": {"every_steps": 2, "keep_last": 1, "best_metric": "eval_accuracy"}})
    assert_resumes_exactly(tmp_path, recipe, kill_after_checkpoint=4)
    for run in ("ref", "killed"):
        selection = json.loads((tmp_path / run / "run.json").read_text())["selection"]
        assert selection == {"metric": "eval_accuracy", "best_value": 0.0, "best_step": 2, "last_step": 6,
                             "stopped_early": True}
    best = load_file(tmp_path / "ref" / "checkpoints" / "checkpoint-2" / "model.safetensors")
    published = final_weights(tmp_path / "ref")
    matched = [k for k in published if f"policy.{k}" in best]
    assert matched and all(torch.equal(published[k], best[f"policy.{k}"]) for k in matched)
