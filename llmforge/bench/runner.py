"""`llmforge bench`: every workload and baseline, one after the other (each in a process of its own), then
the tables.

Everything compared side by side runs in the same invocation on the same device, so the
ratios hold even where the absolute figures drift between machines or runs.
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from llmforge.bench import hardware
from llmforge.bench.worker import run_in_child
from llmforge.bench.workloads import (
    CPU_FULL,
    CPU_QUICK,
    GPU,
    Size,
    Workload,
    chat_file,
    feature_workloads,
    overhead_recipe,
    stage_workloads,
)

log = logging.getLogger("llmforge")
GROUPS = ("stages", "features", "overhead", "online")
PPO_COMPLETIONS, PPO_GENERATIONS, PPO_NEW_TOKENS = 16, 4, 32


def flops_per_token(run: Path, seq_len: int) -> float | None:
    """Training FLOPs per token, 6 N + 12 L h s (N: non-embedding parameters), from the saved full model."""
    import json

    from safetensors import safe_open

    final = run / "final"
    files = sorted(final.glob("*.safetensors"))
    if not files or not (final / "config.json").is_file() or (final / "adapter_config.json").is_file():
        return None
    params = 0
    for file in files:
        with safe_open(file, "pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
                if "embed" not in key and "lm_head" not in key:
                    params += math.prod(f.get_slice(key).get_shape())
    config = json.loads((final / "config.json").read_text())
    return 6 * params + 12 * config["num_hidden_layers"] * config["hidden_size"] * seq_len


def _spec(name: str, kind: str, size: Size, **fields: Any) -> dict[str, Any]:
    return {"name": name, "kind": kind, "size": asdict(size), **fields}


def measure(workload: Workload, size: Size, ceiling: float, folder: Path) -> dict[str, Any]:
    log.info("bench: %s", workload.name)
    rates = run_in_child(_spec(workload.name, "recipe", size, recipe=workload.recipe), folder / "workers")
    row: dict[str, Any] = {"name": workload.name, "group": workload.group, "note": workload.note, **rates}
    train = workload.recipe["train"]
    if workload.recipe["stage"] in ("rm", "dpo"):
        row["pairs_per_second"] = train["micro_batch_size"] / row["step_seconds"]
    if workload.recipe["stage"] == "ppo":
        row["prompts_per_second"] = workload.recipe["ppo"]["rollout_batch_size"] / row["step_seconds"]
        row["completions_per_second"] = row["prompts_per_second"]
    flops = flops_per_token(Path(workload.recipe["output_dir"]), size.max_length)
    if flops and "tokens_per_second" in row:
        row["mfu"] = row["tokens_per_second"] * flops / ceiling
    return row


def save_initial_model(size: Size, folder: Path) -> Path:
    """The preset's initial weights as a plain HF folder: the common start of llmforge and the baselines."""
    from llmforge.config.schema import ModelConfig
    from llmforge.registry import load_model

    torch.manual_seed(0)
    loaded = load_model(ModelConfig(name=size.model, config_overrides=size.config_overrides))
    out = folder / "init"
    loaded.model.save_pretrained(out)
    loaded.tokenizer.save_pretrained(out)
    return out


def overhead_rows(size: Size, folder: Path, init: Path) -> list[dict[str, Any]]:
    """llmforge SFT vs plain TRL vs a plain loop at equal settings, then each one's defaults (packing)."""
    data, runs = str(chat_file(folder)), folder / "runs"
    same = overhead_recipe(size, folder)
    same["model"] = {"name": str(init)}
    defaults = {**same, "output_dir": str(runs / "defaults-llmforge"), "data": {**same["data"], "packing": True}}
    lora = {**defaults, "output_dir": str(runs / "lora-llmforge"), "adapter": {"type": "lora", "r": 16, "alpha": 32,
                                                                             "target_modules": "all-linear"}}
    specs = [
        ("llmforge sft", "padded batches, no checkpointing", _spec("llmforge sft", "recipe", size, recipe=same)),
        ("trl SFTTrainer", "plain script, same settings",
         _spec("trl SFTTrainer", "trl_sft", size, model=str(init), data=data, out=str(runs / "trl-sft"),
               own_defaults=False)),
        ("plain pytorch loop", "no Trainer",
         _spec("plain pytorch loop", "plain_loop", size, model=str(init), data=data, out=str(runs / "plain"))),
        ("llmforge sft, its defaults", "packing on", _spec("llmforge defaults", "recipe", size, recipe=defaults)),
        ("trl SFTTrainer, its defaults", "no packing, gradient checkpointing on",
         _spec("trl defaults", "trl_sft", size, model=str(init), data=data, out=str(runs / "trl-sft-defaults"),
               own_defaults=True)),
        ("llmforge sft-lora, its defaults", "LoRA r=16 all-linear, packing on",
         _spec("llmforge lora", "recipe", size, recipe=lora)),
        ("trl SFTTrainer + peft, its defaults", "LoRA r=16 all-linear, no packing, gradient checkpointing on",
         _spec("trl lora", "trl_sft", size, model=str(init), data=data, out=str(runs / "trl-lora"),
               own_defaults=True, lora=True)),
    ]
    rows = []
    for name, note, spec in specs:
        log.info("bench: %s", name)
        rows.append({"name": name, "group": "overhead", "note": note, **run_in_child(spec, folder / "workers")})
    return rows


def online_rows(size: Size, folder: Path, init: Path) -> list[dict[str, Any]]:
    rows = []
    online = {"completions": PPO_COMPLETIONS, "generations": PPO_GENERATIONS, "max_new_tokens": PPO_NEW_TOKENS}
    for kind in ("grpo", "rloo"):
        log.info("bench: trl %s", kind)
        rates = run_in_child(_spec(f"trl {kind}", "trl_online", size, trainer=kind, model=str(init),
                                   out=str(folder / "runs" / f"trl-{kind}"), online=online), folder / "workers")
        rows.append({"name": f"trl {kind.upper()}Trainer", "group": "online",
                     "note": f"{PPO_COMPLETIONS} completions ({PPO_GENERATIONS} per prompt) x {PPO_NEW_TOKENS} "
                             "tokens", **rates,
                     "completions_per_second": PPO_COMPLETIONS / rates["step_seconds"],
                     "prompts_per_second": PPO_COMPLETIONS / PPO_GENERATIONS / rates["step_seconds"]})
    return rows


def run_benchmarks(folder: Path, quick: bool = True, groups: tuple[str, ...] = GROUPS,
                   steps: int | None = None) -> dict[str, Any]:
    on_gpu = torch.cuda.is_available()
    size = GPU if on_gpu else (CPU_QUICK if quick else CPU_FULL)
    if steps:
        size = Size(size.model, size.config_overrides, size.max_length, size.micro_batch_size, steps,
                    min(size.warmup, steps // 2))
    folder.mkdir(parents=True, exist_ok=True)
    ceiling = hardware.matmul_ceiling()
    result: dict[str, Any] = {"device": hardware.describe(), "mode": "quick" if quick else "full",
                              "steps": size.steps, "warmup_steps": size.warmup, "model": size.model,
                              "config_overrides": size.config_overrides, "max_length": size.max_length,
                              "micro_batch_size": size.micro_batch_size, "matmul_ceiling_flops": ceiling,
                              "datasheet_flops": hardware.datasheet_peak(), "rows": []}
    init = save_initial_model(size, folder)
    if "stages" in groups:
        result["rows"] += [measure(w, size, ceiling, folder) for w in stage_workloads(size, folder)]
    if "features" in groups:
        result["rows"] += [measure(w, size, ceiling, folder) for w in feature_workloads(size, folder)]
    if "overhead" in groups:
        result["rows"] += overhead_rows(size, folder, init)
    if "online" in groups:
        ppo = [r for r in result["rows"] if r["name"] == "ppo"] or [
            measure(w, size, ceiling, folder) for w in stage_workloads(size, folder) if w.name == "ppo"]
        result["rows"] += [{**ppo[0], "group": "online", "name": "llmforge ppo",
                            "note": f"{PPO_COMPLETIONS} prompts x 1 completion x {PPO_NEW_TOKENS} tokens, value head"}]
        result["rows"] += online_rows(size, folder, init)
    shutil.rmtree(folder / "runs", ignore_errors=True)
    result["memory"] = "peak allocated on the GPU" if on_gpu else "peak resident set of the workload's process"
    return result
