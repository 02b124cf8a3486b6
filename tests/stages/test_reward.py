"""Reward modelling: the reward model ranks held-out pairs, saves its score statistics, scores files,
and resumes exactly.

Calibration (float32, 2-core Xeon with AMX): a LoRA (r=16) reward model on this suite's SFT model (which
answers ~0.18 of held-out problems), 1000 steps of 16 pairs, ranks 0.59 of 208 held-out pairs (right answer vs
a near miss of +-1, +-2 or +-10, on problems it never saw) with a mean margin of 3.15; on the tiny-rlhf
pipeline's better SFT models, 0.59-0.70 over seeds 1-3. An untrained head ranks ~0.5 with a margin near 0.
Bounds: accuracy 0.55 and a mean margin of 1.0.
"""

from __future__ import annotations

import json
import math

import pytest

from llmforge.config import load_config
from llmforge.stages import run as run_stage
from tests.helpers import RM, assert_resumes_exactly, run_cli, write_recipe

pytestmark = pytest.mark.slow

PAIR_ACCURACY_BOUND = 0.55
MARGIN_BOUND = 1.0
@pytest.fixture(scope="module")
def rm_run(sft_full, tmp_path_factory):
    folder = tmp_path_factory.mktemp("rm")
    run_stage(load_config(write_recipe(folder, base=RM, model={"name": str(sft_full)})))
    return folder / "run"


def test_reward_model_ranks_held_out_pairs(rm_run):
    metrics = json.loads((rm_run / "run.json").read_text())["final_metrics"]
    assert metrics["eval_accuracy"] >= PAIR_ACCURACY_BOUND and metrics["eval_margin"] >= MARGIN_BOUND
    assert "eval_perplexity" not in metrics  # a reward model's loss is not a language-model loss
    stats = json.loads((rm_run / "final" / "reward_stats.json").read_text())
    assert stats["count"] == 2 * 200 and stats["std"] > 0 and math.isfinite(stats["mean"])
    assert (rm_run / "final" / "adapter_model.safetensors").is_file()


def test_eval_scores_a_preference_file_with_the_reward_model(rm_run, tmp_path):
    rows = [{"prompt": f"What is {a} + {b}?", "chosen": str(a + b), "rejected": str(a + b + delta)}
            for a, b, delta in [(3, 4, 1), (5, 2, 10), (8, 1, 2), (6, 3, -1), (2, 2, 1), (7, 0, 10)]]
    rows.append({"prompt": "What is 1 + 1?", "chosen": "2", "rejected": "2"})  # teaches nothing: skipped
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_cli("eval", str(rm_run), "--path", str(path))
    assert result.returncode == 0, result.stderr[-2000:]
    scored = json.loads(result.stdout.strip().splitlines()[-1])
    assert scored["pairs"] == 6 and scored["skipped"] == {"identical": 1}
    assert scored["eval_accuracy"] >= 4 / 6 and scored["eval_margin"] > 0


def test_reward_model_resumes_exactly_after_sigkill(tmp_path):
    recipe = {**RM, "model": {"name": "tiny-llama"}, "adapter": {"type": "none"},
              "data": {**RM["data"], "train": [{"name": "arithmetic-pref", "options": {"num_samples": 400}}]},
              "train": {"max_steps": 20, "micro_batch_size": 8, "lr": 1.0e-3},
              "checkpoint": {"every_steps": 10}, "logging": {"every_steps": 5}, "eval": {"max_samples": 16}}
    assert_resumes_exactly(tmp_path, recipe, kill_after_checkpoint=10)
