"""`distributed.*` -> the Trainer arguments that select DDP, FSDP2 or DeepSpeed ZeRO.

Configs are generated from the recipe every run (no hand-kept JSON to drift from it);
a user's own DeepSpeed JSON can replace the generated one. Batch sizes, accumulation,
clipping and precision stay "auto" so they always follow the recipe's train.* keys.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from llmforge.config.schema import RunConfig
from llmforge.distributed import launched_externally
from llmforge.distributed.state import backend
from llmforge.engine.quiet import deepspeed_accelerator
from llmforge.errors import UserError
from llmforge.precision import decide


def deepspeed_config(cfg: RunConfig) -> dict[str, Any]:
    deepspeed_accelerator()
    dist = cfg.distributed
    if dist.deepspeed_config:
        path = Path(dist.deepspeed_config)
        if not path.is_file():
            raise UserError(f"distributed.deepspeed_config: {path} does not exist.")
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"distributed.deepspeed_config: {path} is not valid JSON ({exc}).") from None
    zero: dict[str, Any] = {"stage": dist.zero_stage, "overlap_comm": False, "contiguous_gradients": True}
    if dist.offload in ("optimizer", "all"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if dist.offload == "all":
        if dist.zero_stage != 3:
            raise UserError("distributed.offload=all offloads parameters, which needs distributed.zero_stage=3.")
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if dist.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # final/ is a full HF folder
    return {
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "train_batch_size": "auto",
        "gradient_clipping": "auto",
        "zero_optimization": zero,
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
    }


def fsdp_arguments(cfg: RunConfig, layer_class: str | None) -> dict[str, Any]:
    dist = cfg.distributed
    options = ["full_shard", "auto_wrap"] + (["offload"] if dist.offload != "none" else [])
    config: dict[str, Any] = {
        "version": 2,
        "state_dict_type": "SHARDED_STATE_DICT" if dist.state_dict == "sharded" else "FULL_STATE_DICT",
        "reshard_after_forward": True,
    }
    if layer_class:
        config["transformer_layer_cls_to_wrap"] = [layer_class]
    return {"fsdp": " ".join(options), "fsdp_config": config}


def strategy_arguments(cfg: RunConfig, layer_class: str | None) -> dict[str, Any]:
    """Extra TrainingArguments for `distributed.strategy`; DDP needs none beyond the backend."""
    dist = cfg.distributed
    extra: dict[str, Any] = {}
    if launched_externally():
        # Every parameter takes part in the loss; searching for unused ones costs a graph walk per step.
        extra.update(ddp_backend=backend(), ddp_find_unused_parameters=False)
    if dist.strategy == "fsdp":
        extra.update(fsdp_arguments(cfg, layer_class))
    elif dist.strategy == "deepspeed":
        if importlib.util.find_spec("deepspeed") is None:
            raise UserError("distributed.strategy=deepspeed needs DeepSpeed: pip install 'llmforge[deepspeed]'.")
        extra["deepspeed"] = deepspeed_config(cfg)
    elif dist.offload != "none":
        raise UserError("distributed.offload applies to strategy fsdp or deepspeed, not ddp.")
    return extra


def accelerator_for(cfg: RunConfig, layer_class: str | None) -> Any:
    """An accelerate `Accelerator` for stages that run their own loop (ppo), set up from the same keys.

    Gradient accumulation follows train.grad_accum_steps; DeepSpeed gets the generated (or the user's)
    config with the recipe's batch, clipping and precision filled in; FSDP2 wraps the family's decoder layers.
    """
    import torch
    from accelerate import Accelerator, DeepSpeedPlugin, FullyShardedDataParallelPlugin

    from llmforge.distributed.state import process_state

    dist, train = cfg.distributed, cfg.train
    precision = decide(cfg.model.dtype, train.mixed_precision).mixed
    kwargs: dict[str, Any] = {"cpu": not torch.cuda.is_available(), "gradient_accumulation_steps": train.grad_accum_steps,
                              "mixed_precision": precision}
    if dist.strategy == "fsdp":
        kwargs["fsdp_plugin"] = FullyShardedDataParallelPlugin(
            fsdp_version=2, auto_wrap_policy="transformer_based_wrap" if layer_class else "no_wrap",
            transformer_cls_names_to_wrap=[layer_class] if layer_class else None, reshard_after_forward=True,
            cpu_offload=dist.offload != "none",
            state_dict_type="SHARDED_STATE_DICT" if dist.state_dict == "sharded" else "FULL_STATE_DICT")
    elif dist.strategy == "deepspeed":
        if importlib.util.find_spec("deepspeed") is None:
            raise UserError("distributed.strategy=deepspeed needs DeepSpeed: pip install 'llmforge[deepspeed]'.")
        config = deepspeed_config(cfg)
        world = process_state().num_processes
        config.update(train_micro_batch_size_per_gpu=train.micro_batch_size, gradient_accumulation_steps=train.grad_accum_steps,
                      train_batch_size=train.micro_batch_size * train.grad_accum_steps * world,
                      gradient_clipping=train.max_grad_norm, bf16={"enabled": precision == "bf16"},
                      fp16={"enabled": precision == "fp16"})
        kwargs["deepspeed_plugin"] = DeepSpeedPlugin(hf_ds_config=config)
    elif dist.offload != "none":
        raise UserError("distributed.offload applies to strategy fsdp or deepspeed, not ddp.")
    return Accelerator(**kwargs)
