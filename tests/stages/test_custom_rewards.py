"""grpo and ppo rewarded by your own function (a file) and a remote service on 127.0.0.1, beside a built-in:
each source reaches the logs as rewards/<name>, and the combined reward is their weighted sum."""

from __future__ import annotations

import json

import pytest

from llmforge.config import load_config
from llmforge.stages import run as run_stage
from tests.helpers import DIGITS, json_service, metric_lines, write_recipe

REWARDS = '''
import json, os

def quarter(prompts, completions, answer, **columns):
    with open(os.environ["REWARD_CALLS"], "a") as log:
        log.write(json.dumps({"n": len(completions), "answers": answer[:2], "prompt": prompts[0]}) + "\\n")
    return [0.25 for _ in completions]
'''


@pytest.fixture
def service():
    with json_service(lambda body: {"rewards": [0.5] * len(body["completions"])}) as (url, _):
        yield url


PROMPTS = {"train": [{"name": "arithmetic-prompts", "options": {"num_samples": 64, **DIGITS}}], "eval": []}
STAGES = {
    "grpo": {"grpo": {"num_generations": 4, "max_new_tokens": 4}, "train": {"max_steps": 2, "micro_batch_size": 8}},
    "ppo": {"ppo": {"rollout_batch_size": 4, "samples_per_prompt": 2, "max_new_tokens": 4, "ppo_epochs": 1,
                    "value_model": "policy"}, "train": {"max_steps": 2, "micro_batch_size": 4}},
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_file_function_and_a_service_reward_an_online_stage(stage, tmp_path, service, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(REWARDS)
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("REWARD_CALLS", str(calls))
    monkeypatch.chdir(tmp_path)  # the recipe names the file relative to where llmforge runs
    options = {**STAGES[stage][stage], "reward_functions": ["my_rewards.py:quarter"], "reward_url": service,
               "reward_weights": [1.0, 2.0]}
    base = {"stage": stage, "seed": 3, "model": {"name": "tiny-llama"}, "data": PROMPTS, stage: options,
            "train": {**STAGES[stage]["train"], "lr": 1e-4}, "logging": {"every_steps": 1},
            "checkpoint": {"every_steps": 100}}
    recipe = write_recipe(tmp_path, base=base)
    outcome = run_stage(load_config(recipe))
    lines = metric_lines(outcome.output_dir, "reward")
    assert len(lines) == 2
    for line in lines:
        own = next(v for k, v in line.items() if k.startswith("rewards/quarter"))
        remote = next(v for k, v in line.items() if k.startswith("rewards/url:127.0.0.1"))
        assert own == pytest.approx(0.25) and remote == pytest.approx(0.5)
        assert line["reward"] == pytest.approx(0.25 + 2 * 0.5)  # the weighted sum
    seen = [json.loads(x) for x in calls.read_text().splitlines()]
    assert seen and all(call["answers"][0].isdigit() for call in seen)  # the prompt rows' answer column
    assert seen[0]["prompt"][-1]["role"] == "user"
