"""Best-checkpoint selection and early stopping on a constructed evaluation curve, through the real engine:
the published final/ holds the best step's weights, the best checkpoint outlives keep_last, the run stops at
the step the patience rule gives, and a run SIGKILLed after the best checkpoint resumes to the same best, the
same stopping step and the same weights.

The curve (eval_loss by step, evaluated every 2 steps; min_delta 0.05, patience 3):
    step 2: 3.0   4: 2.0 (best)   6: 1.98 (best, but not better by min_delta: 1 without improvement)
    step 8: 2.1 (2)   10: 2.6 (3: stop)
so the run stops at step 10 of 30 and final/ holds step 6. Were the early-stopping counter not restored on
resume, a run killed after checkpoint-6 would stop at step 12 instead.
"""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from safetensors.torch import load_file
from transformers import Trainer

from llmforge.config.stages import StageSpec, spec_for
from tests.helpers import ROOT, TINY_PRETRAIN, checkpoint_complete, final_weights, kill_when, write_recipe

CURVE = {2: 3.0, 4: 2.0, 6: 1.98, 8: 2.1, 10: 2.6, 12: 2.7}


class CurveTrainer(Trainer):
    """A Trainer whose evaluations follow CURVE (the training itself is real)."""

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        metrics = {"eval_loss": CURVE.get(self.state.global_step, 9.0)}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


def curve_build(cfg):
    parts = spec_for("pretrain").build(cfg)
    parts.trainer_class = CurveTrainer
    return parts


CURVE_STAGE = StageSpec(name="curve", summary="pretraining judged by a constructed eval curve", build=curve_build,
                        uses=("eval", "data.train", "data.eval", "data.max_length"), samples="none")
# `llmforge` in a fresh process, with the curve stage registered (what a package's entry point would do)
LAUNCH = ("import sys; from llmforge.config.stages import register; from tests.engine.test_model_selection import "
          "CURVE_STAGE; register(CURVE_STAGE); from llmforge.cli import main; sys.exit(main(sys.argv[1:]))")
RECIPE = {**TINY_PRETRAIN, "stage": "curve", "train": {**TINY_PRETRAIN["train"], "max_steps": 30,
                                                       "early_stopping": {"patience": 3, "min_delta": 0.05}},
          "eval": {"every_steps": 2}, "checkpoint": {"every_steps": 2, "keep_last": 1, "best_metric": "eval_loss"}}


def _command(recipe) -> list[str]:
    return [sys.executable, "-c", LAUNCH, "train", str(recipe)]


def _train(recipe) -> subprocess.CompletedProcess:
    return subprocess.run(_command(recipe), capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_best_checkpoint_is_published_early_stopping_stops_and_a_killed_run_resumes_to_both(tmp_path):
    reference = write_recipe(tmp_path, name="ref.yaml", base=RECIPE, output_dir=str(tmp_path / "ref"))
    result = _train(reference)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "ref"
    selection = json.loads((run / "run.json").read_text())["selection"]
    assert selection == {"metric": "eval_loss", "best_value": 1.98, "best_step": 6, "last_step": 10,
                         "stopped_early": True}
    kept = sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("checkpoint-"))
    assert kept == ["checkpoint-10", "checkpoint-6"]  # keep_last 1, and the best besides it
    best = load_file(run / "checkpoints" / "checkpoint-6" / "model.safetensors")
    last = load_file(run / "checkpoints" / "checkpoint-10" / "model.safetensors")
    published = final_weights(run)
    assert all(torch.equal(published[k], best[k]) for k in best)
    assert any(not torch.equal(published[k], last[k]) for k in last)  # the last step stays reachable, unpublished
    steps = [json.loads(line).get("step") for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(s for s in steps if s is not None) == 10

    killed = write_recipe(tmp_path, name="killed.yaml", base=RECIPE, output_dir=str(tmp_path / "killed"))
    process = subprocess.Popen(_command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               cwd=ROOT)
    kill_when(process, checkpoint_complete(tmp_path / "killed", 6))
    result = _train(killed)
    assert result.returncode == 0 and "Resuming from" in result.stderr, result.stderr[-3000:]
    assert json.loads((tmp_path / "killed" / "run.json").read_text())["selection"] == selection
    again = final_weights(tmp_path / "killed")
    assert all(torch.equal(again[k], published[k]) for k in published)
