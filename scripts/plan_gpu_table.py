"""The memory plan's GPU predictions for 0.5B, 7B and 70B beside published figures (docs/memory.md's table).

    python scripts/plan_gpu_table.py      # seconds: every model is planned on the meta device, nothing loads

SFT on one GPU, micro-batch 1, 1,024 tokens, gradient checkpointing on; then full training under ZeRO-3 over
8 GPUs beside DeepSpeed's estimator formula (model states: 18 bytes per parameter over the GPUs, plus 4 bytes
per parameter of the largest layer gathered).
"""

from __future__ import annotations

from typing import Any

from llmforge.config.compose import validate_dict
from llmforge.config.schema import ModelConfig
from llmforge.memory import Budget, GiB, plan
from llmforge.memory.shapes import shape_of

MODELS = ("qwen2.5-0.5b", "qwen2.5-7b", "llama3-70b")
ANYTHING = Budget(10**15, "paper")
RECIPES = [  # (name, changes, LLaMA-Factory's 7B / 70B in GB)
    ("full, bf16 autocast (float32 master weights)", {}, "120 / 1,200"),
    ("full, pure bf16", {"model": {"dtype": "bfloat16"}}, "60 / 600"),
    ("LoRA r=16 all linear, bf16 base", {"model": {"dtype": "bfloat16"},
                                         "adapter": {"type": "lora", "r": 16, "target_modules": "all-linear"}}, "16 / 160"),
    ("QLoRA r=16, NF4 base", {"adapter": {"type": "qlora", "r": 16, "target_modules": "all-linear"}}, "6 / 48"),
]


def recipe(model: str, changes: dict[str, Any]) -> Any:
    data: dict[str, Any] = {"stage": "sft", "output_dir": "/tmp/planned", "model": {"name": model},
                            "data": {"train": [{"name": "arithmetic-sft"}], "max_length": 1024},
                            "train": {"micro_batch_size": 1, "gradient_checkpointing": True}}
    for section, values in changes.items():
        data[section] = {**data.get(section, {}), **values}
    return validate_dict(data)


def main() -> None:
    parameters = {model: shape_of(ModelConfig(name=model)).parameters for model in MODELS}
    print("| recipe | plan 0.5B | plan 7B | plan 70B | LLaMA-Factory 7B / 70B (GB) | ZeRO paper 7B / 70B (GiB) |")
    print("|---|---|---|---|---|---|")
    for name, changes, published in RECIPES:
        cells = [f"{plan(recipe(model, changes), 'cuda', ANYTHING).estimate.peak / GiB:,.1f}" for model in MODELS]
        zero = (f"{16 * parameters['qwen2.5-7b'] / GiB:,.0f} / {16 * parameters['llama3-70b'] / GiB:,.0f}"
                if not changes else "-")
        print(f"| {name} | " + " | ".join(cells) + f" | {published} | {zero} |")
    print()
    for model in MODELS[1:]:
        sharded = recipe(model, {"distributed": {"nproc_per_node": 8, "strategy": "deepspeed", "zero_stage": 3}})
        shape = shape_of(ModelConfig(name=model))
        deepspeed = (18 * shape.parameters / 8 + 4 * shape.layer_parameters) / GiB
        print(f"{model}, ZeRO-3 over 8 GPUs: plan {plan(sharded, 'cuda', ANYTHING).estimate.peak / GiB:,.1f} GiB "
              f"per GPU; DeepSpeed's model-states estimate {deepspeed:,.1f} GiB")


if __name__ == "__main__":
    main()
