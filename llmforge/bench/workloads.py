"""The fixed workloads: one tiny recipe per stage, and the variants that isolate one setting each.

Every llmforge workload is an ordinary recipe run in-process through the same runner as
`llmforge train`, logging every step; its speed is read back from metrics.jsonl over the
steps after warm-up (so start-up, data preparation and the first steps' kernel selection
or compilation are left out), the same way for every workload and baseline.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from llmforge.config.compose import validate_dict


@dataclass
class Size:
    """How big a benchmark run is: the model and the sequence length follow the device."""

    model: str
    config_overrides: dict[str, Any]
    max_length: int
    micro_batch_size: int
    steps: int
    warmup: int


CPU_QUICK = Size("tiny-llama", {}, 256, 8, 14, 4)
CPU_FULL = Size("tiny-llama", {"hidden_size": 256, "intermediate_size": 704, "num_hidden_layers": 6,
                               "num_attention_heads": 8, "num_key_value_heads": 4}, 256, 8, 40, 10)
# GPU mode: the Llama 3.2 1B shape cut to 8 layers (~0.75B parameters, 0.5B outside the embeddings) at 2k
# context in bf16, for every workload (pretraining, full and LoRA SFT, rm, dpo, ppo).
GPU = Size("llama3-1b", {"num_hidden_layers": 8}, 2048, 8, 30, 10)


@dataclass
class Workload:
    name: str
    group: str  # which table it belongs to
    recipe: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def chat_file(folder: Path, rows: int = 2000, seed: int = 0) -> Path:
    """A variable-length chat dataset (1-4 built-in stories per answer: ~10 to ~300 tokens), written once."""
    from llmforge.config.schema import DataSource
    from llmforge.data.sources import load_source

    path = folder / "chat.jsonl"
    if path.is_file():
        return path
    stories = [row["text"] for row in load_source(DataSource(name="tinytext")).rows]
    rng = random.Random(seed)
    with path.open("w") as f:
        for index in range(rows):
            answer = " ".join(rng.sample(stories, rng.choice((1, 1, 2, 4))))
            f.write(json.dumps({"messages": [{"role": "user", "content": f"Tell me story number {index}."},
                                             {"role": "assistant", "content": answer}]}) + "\n")
    return path


def base_recipe(stage: str, size: Size, out: Path, sources: list[dict], **changes: Any) -> dict[str, Any]:
    recipe: dict[str, Any] = {
        "stage": stage, "seed": 0, "output_dir": str(out),
        "model": {"name": size.model, "config_overrides": size.config_overrides},
        "data": {"train": sources, "eval": [], "max_length": size.max_length},
        "train": {"max_steps": size.steps, "micro_batch_size": size.micro_batch_size, "lr": 1e-4,
                  "warmup_ratio": 0.0, "scheduler": "constant"},
        "checkpoint": {"every_steps": 10_000},
        "logging": {"every_steps": 1},
    }
    for section, values in changes.items():
        if isinstance(values, dict):
            recipe.setdefault(section, {}).update(values)
        else:
            recipe[section] = values
    return recipe


def stage_workloads(size: Size, folder: Path) -> list[Workload]:
    chat = [{"path": str(chat_file(folder)), "format": "messages"}]
    pairs = [{"name": "arithmetic-pref", "options": {"num_samples": 4000}}]
    run = folder / "runs"
    return [
        Workload("pretrain", "stages", base_recipe("pretrain", size, run / "pretrain", [{"name": "tinytext"}])),
        Workload("sft", "stages", base_recipe("sft", size, run / "sft", chat)),
        Workload("sft-lora", "stages", base_recipe("sft", size, run / "sft-lora", chat,
                                                   adapter={"type": "lora", "r": 16, "alpha": 32})),
        Workload("rm", "stages", base_recipe("rm", size, run / "rm", pairs)),
        Workload("dpo", "stages", base_recipe("dpo", size, run / "dpo", pairs)),
        ppo_workload(size, folder, "auto", 16, 1, 32),
    ]


def ppo_workload(size: Size, folder: Path, engine: str, prompts: int, samples: int, new_tokens: int) -> Workload:
    """PPO on the built-in prompts with the arithmetic reward and a value head, one update epoch."""
    source = [{"name": "arithmetic-prompts", "options": {"num_samples": 4000}}]
    name = "ppo" if engine == "auto" else f"ppo-{engine}"
    return Workload(name, "stages", base_recipe(
        "ppo", size, folder / "runs" / name, source,
        ppo={"reward_functions": ["arithmetic"], "value_model": "policy", "rollout_batch_size": prompts,
             "samples_per_prompt": samples, "max_new_tokens": new_tokens, "ppo_epochs": 1,
             "missing_eos_penalty": None, "generation": engine},
        train={"micro_batch_size": 8}))


BATCHING_OPTIONS = ("packed", "packed-flex", "grouped", "padded")  # rows that decide sft_default_vs_best_option


def feature_workloads(size: Size, folder: Path) -> list[Workload]:
    """SFT with one speed setting changed from the default at a time (the first row is the default), every
    way of batching variable-length rows side by side."""
    from llmforge.engine.arguments import liger_available

    chat = [{"path": str(chat_file(folder)), "format": "messages"}]
    run = folder / "runs"

    def variant(name: str, note: str, **changes: Any) -> Workload:
        return Workload(name, "features", base_recipe("sft", size, run / f"feature-{name}", chat, **changes), note)

    return [
        variant("default", "data.packing: auto (the device's choice), sdpa attention, adamw_torch"),
        variant("packed", "data.packing: true (padding-free rows, per-sample positions), sdpa",
                data={"packing": True}),
        variant("grouped", "data.packing: grouped (padded batches of similar lengths)", data={"packing": "grouped"}),
        variant("padded", "data.packing: false (padded batches, random order)", data={"packing": False}),
        variant("eager-attention", "attn_implementation: eager", model={"attn_implementation": "eager"}),
        variant("gradient-checkpointing", "train.gradient_checkpointing: true",
                train={"gradient_checkpointing": True}),
        variant("fused-adamw", "train.optimizer: adamw_torch_fused", train={"optimizer": "adamw_torch_fused"}),
        variant("torch-compile", "train.compile: true", train={"compile": True}),
    ] + ([variant("liger", "train.liger_kernel: true", train={"liger_kernel": True})] if liger_available() else []) + (
        # PyTorch's FlexAttention has no backward pass on CPU: a GPU option only
        [variant("packed-flex", "data.packing: true, attn_implementation: flex_attention (compiled block mask)",
                 data={"packing": True}, model={"attn_implementation": "flex_attention"})]
        if torch.cuda.is_available() else [])


def overhead_recipe(size: Size, folder: Path) -> dict[str, Any]:
    """llmforge SFT at the settings the plain TRL script and the plain loop use: padded batches, no packing."""
    chat = [{"path": str(chat_file(folder)), "format": "messages"}]
    return base_recipe("sft", size, folder / "runs" / "overhead-llmforge", chat, data={"packing": False},
                       train={"max_grad_norm": 1.0})


def run_recipe(recipe: dict[str, Any]) -> Path:
    """Run a workload as `llmforge train` would: in this process, or under the launcher for several."""
    from llmforge.config.stages import spec_for
    from llmforge.distributed import launcher
    from llmforge.engine.runner import run_stage

    cfg = validate_dict(recipe)
    if launcher.needs_launch(cfg):
        path = Path(recipe["output_dir"]).with_suffix(".yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        if launcher.launch(cfg, str(path), []):
            raise RuntimeError(f"the launched workload {path} failed; its output is above")
    else:
        run_stage(cfg, spec_for(cfg.stage))
    return Path(recipe["output_dir"])


def steady_rates(run: Path, warmup: int) -> dict[str, float]:
    """Speed over the logged steps after `warmup`: step time, tokens/s (non-padding), and PPO's split."""
    from llmforge.report.plots import read_metrics

    rows = read_metrics(run)
    steps = [r for r in rows if "loss" in r and "train_loss" not in r and r.get("step", 0) > warmup]
    if len(steps) < 2:
        raise RuntimeError(f"{run}: fewer than two logged steps after warm-up")
    if "time/generation" in steps[0]:  # PPO logs its own split per step
        generation = sum(r["time/generation"] for r in steps) / len(steps)
        training = sum(r["time/training"] for r in steps) / len(steps)
        return {"step_seconds": generation + training, "generation_share": generation / (generation + training)}
    return step_rates([(r["step"], r["train_runtime"], r.get("num_input_tokens_seen", 0)) for r in steps])


def step_rates(marks: list[tuple[int, float, int]]) -> dict[str, float]:
    """Step time as the median of the per-step intervals between (step, seconds, tokens seen) marks, so one
    slow step (a collection pause, another process's burst) does not decide a ratio; on this 2-core machine
    repeated runs of the same workload spread +-8% by their mean step and +-2% by their median. Tokens/s
    over the whole span (every token counts once)."""
    import statistics

    intervals = [(t1 - t0) / (s1 - s0) for (s0, t0, _), (s1, t1, _) in zip(marks, marks[1:], strict=False)]
    result = {"step_seconds": statistics.median(intervals)}
    (_, first_time, first_tokens), (_, last_time, last_tokens) = marks[0], marks[-1]
    if last_tokens > first_tokens:
        result["tokens_per_second"] = (last_tokens - first_tokens) / (last_time - first_time)
    return result


def paired_ratios(ours: dict[str, Any], theirs: dict[str, Any]) -> list[float]:
    """Our speed over theirs, one ratio per repetition (each of our runs against the script's run right after
    it); one ratio of the fastest steps where the rows carry no repetitions."""
    mine, other = ours.get("repeat_step_seconds"), theirs.get("repeat_step_seconds")
    if mine and other and len(mine) == len(other):
        return [b / a for a, b in zip(mine, other, strict=True)]
    return [theirs["step_seconds"] / ours["step_seconds"]]
