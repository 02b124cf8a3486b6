"""One precision decision: what it decides per device and dtype, and what every stage really computes in."""

from __future__ import annotations

import pytest
import torch

from llmforge.config import load_config
from llmforge.errors import UserError
from llmforge.precision import decide
from llmforge.stages import run as run_stage
from tests.helpers import ROOT, write_recipe


def test_cpu_trains_in_float32_without_autocast():
    auto = decide("auto", "auto", device="cpu")
    assert auto.weights == torch.float32 and auto.autocast is None
    assert auto.trainer_flags() == {"bf16": False, "fp16": False, "use_cpu": True}  # every flag explicit
    assert auto.mixed == "no" and auto.record()["compute"] == "float32"


def test_asked_for_autocast_and_dtypes_are_honoured():
    assert decide("auto", "bf16", device="cpu").trainer_flags()["bf16"] is True
    assert decide("bfloat16", "auto", device="cpu").weights == torch.bfloat16
    assert decide("bfloat16", "auto", device="cpu").autocast is None
    # float32 on a GPU means float32 compute: the Trainer stages and PPO agree (no bf16 autocast)
    assert decide("float32", "auto", device="cuda").autocast is None
    with pytest.raises(UserError, match="float16"):
        decide("float16", "auto", device="cpu")
    with pytest.raises(UserError, match="fp16 needs a GPU"):
        decide("auto", "fp16", device="cpu")
    with pytest.raises(UserError, match="model.dtype=auto"):
        decide("bfloat16", "bf16", device="cpu")


STAGE_RECIPES = {
    "pretrain": ("pretrain/tiny.yaml", ["data.train.0.options={num_documents: 64}"]),
    "sft": ("sft/tiny-full.yaml", []),
    "rm": ("rm/tiny.yaml", []),
    "dpo": ("dpo/tiny.yaml", []),
    "kto": ("kto/tiny.yaml", []),
    "grpo": ("grpo/tiny.yaml", ["grpo.num_generations=2", "train.micro_batch_size=2", "grpo.max_new_tokens=4"]),
    "ppo": ("ppo/tiny.yaml", ["ppo.reward_model=null", "ppo.reward_functions=[arithmetic]", "ppo.reward_weights=null",
                              "ppo.rollout_batch_size=4", "train.micro_batch_size=4", "ppo.max_new_tokens=4"]),
}


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU decision")
@pytest.mark.parametrize("stage", list(STAGE_RECIPES))
def test_every_stage_computes_in_what_the_decision_says(tmp_path, stage):
    """A forward hook on every Linear sees autocast off and float32 outputs on CPU, whatever the stage's
    trainer class defaults to (TRL's configs default to bf16=True)."""
    recipe, overrides = STAGE_RECIPES[stage]
    small = [f"output_dir={tmp_path / 'run'}", "model.name=tiny-llama", "train.max_steps=2",
             "data.eval=[]", "train.micro_batch_size=4",
             "logging.every_steps=1", "checkpoint.every_steps=100"]
    seen: set[tuple[bool, torch.dtype]] = set()

    def hook(module, args, output):
        if isinstance(module, torch.nn.Linear) and isinstance(output, torch.Tensor):
            seen.add((torch.is_autocast_enabled("cpu"), output.dtype))

    size = [] if stage == "pretrain" else ["data.train.0.options.num_samples=64"]
    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        run_stage(load_config(ROOT / "configs" / recipe, small + size + overrides))
    finally:
        handle.remove()
    assert seen == {(False, torch.float32)}


def test_run_records_its_precision(tmp_path):
    import json

    run_stage(load_config(write_recipe(tmp_path, train={"max_steps": 2})))
    assert json.loads((tmp_path / "run" / "run.json").read_text())["precision"]["compute"] == "float32"
