"""Recipe -> TrainingArguments: every scheduler the schema offers builds; keys land where they should."""

from __future__ import annotations

import typing

import pytest
import torch
from transformers import get_scheduler

from llmforge.config import load_config
from llmforge.config.schema import TrainConfig
from llmforge.engine.arguments import scheduler_kwargs, training_arguments
from tests.helpers import write_recipe

SCHEDULERS = typing.get_args(TrainConfig.model_fields["scheduler"].annotation)


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_offered_scheduler_builds_and_warms_up(tmp_path, name):
    cfg = load_config(write_recipe(tmp_path), [f"train.scheduler={name}", "train.warmup_ratio=0.1"])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = get_scheduler(name, optimizer, num_warmup_steps=10, num_training_steps=100,
                             scheduler_specific_kwargs=scheduler_kwargs(cfg))
    if name != "constant":
        assert schedule.get_last_lr()[0] < 1.0  # warmup starts below the peak
    else:  # no warmup, no decay: the peak from the first step to the last
        for _ in range(100):
            assert schedule.get_last_lr()[0] == 1.0
            optimizer.step()
            schedule.step()


def test_recipe_keys_map_to_trainer_arguments(tmp_path):
    cfg = load_config(write_recipe(tmp_path), ["train.grad_accum_steps=4", "eval.every_steps=7",
                                               "checkpoint.every_steps=11", "train.scheduler=cosine_with_min_lr"])
    args = training_arguments(cfg, tmp_path / "checkpoints", has_eval=True)
    assert args.gradient_accumulation_steps == 4 and args.per_device_train_batch_size == 8
    assert args.eval_steps == 7 and args.save_steps == 11 and args.save_total_limit is None
    assert args.lr_scheduler_kwargs == {"min_lr_rate": 0.1}
    assert args.logging_nan_inf_filter is False
    assert args.use_cpu is True and not args.bf16  # CPU: fp32
    no_eval = training_arguments(cfg, tmp_path / "checkpoints", has_eval=False)
    assert no_eval.eval_strategy == "no"
