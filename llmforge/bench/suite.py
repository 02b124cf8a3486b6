"""`llmforge bench`: every workload and baseline, one after the other (each in a process of its own), then
the tables.

Everything compared side by side runs in the same invocation on the same device, so the
ratios hold even where the absolute figures drift between machines or runs.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import statistics
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from llmforge.bench import DEFAULT_GROUPS, GROUPS, hardware
from llmforge.bench.baselines import pairs_file
from llmforge.bench.worker import WorkloadFailed, run_in_child
from llmforge.bench.workloads import (
    BATCHING_OPTIONS,
    CPU_FULL,
    CPU_QUICK,
    GPU,
    Size,
    Workload,
    base_recipe,
    chat_file,
    feature_workloads,
    overhead_recipe,
    paired_ratios,
    ppo_workload,
    stage_workloads,
)
from llmforge.data.batching import sft_batching

log = logging.getLogger("llmforge")
PPO_PROMPTS, PPO_SAMPLES, PPO_NEW_TOKENS = 16, 4, 32


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
        ppo = workload.recipe["ppo"]
        row["prompts_per_second"] = ppo["rollout_batch_size"] / row["step_seconds"]
        row["completions_per_second"] = row["prompts_per_second"] * ppo.get("samples_per_prompt", 1)
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


OVERHEAD_REPEATS = 3  # each equal-settings run three times, interleaved, paired run by run
COMPARED_STEPS, COMPARED_WARMUP = 30, 5  # at least this many steps where a ratio decides a target


def compared(size: Size) -> Size:
    """The size of runs whose ratios decide a target (equal settings, batching options): quick mode's 14 steps
    spread ~25% between two runs of one configuration on a 2-core machine, so these get 30."""
    return replace(size, steps=max(size.steps, COMPARED_STEPS), warmup=max(size.warmup, COMPARED_WARMUP))


def overhead_rows(size: Size, folder: Path, init: Path, extended: bool = True) -> list[dict[str, Any]]:
    """llmforge's SFT, RM and DPO against the plain TRL scripts (and SFT against a plain loop) at equal settings,
    then llmforge's defaults against TRL's defaults (SFT, LoRA SFT).

    The equal-settings runs decide a +-3% claim, so they get at least 30 steps and run OVERHEAD_REPEATS times
    in turn (llmforge, TRL, loop, llmforge, ...). Each row keeps its fastest median step for the table and
    every repetition's (`repeat_step_seconds`), so the summary can pair llmforge's run with the script's run
    right after it: a drift of the machine's speed between repetitions then moves both sides of a pair.
    `extended=False` (steps set by hand): once, at the given steps."""
    chat, pairs, runs = str(chat_file(folder)), str(pairs_file(folder)), folder / "runs"
    equal = compared(size) if extended else size
    same = overhead_recipe(equal, folder)
    same["model"] = {"name": str(init)}
    defaults = overhead_recipe(size, folder)
    defaults.update(model={"name": str(init)}, output_dir=str(runs / "defaults-llmforge"),
                    data={**defaults["data"], "packing": "auto"})
    lora = {**defaults, "output_dir": str(runs / "lora-llmforge"), "adapter": {"type": "lora", "r": 16, "alpha": 32,
                                                                             "target_modules": "all-linear"}}
    pair_source = [{"path": pairs, "format": "preference"}]
    rm = base_recipe("rm", equal, runs / "overhead-rm", pair_source, model={"name": str(init)},
                     rm={"stats_samples": 8})
    dpo = base_recipe("dpo", equal, runs / "overhead-dpo", pair_source, model={"name": str(init)})

    def trl(kind: str, name: str, data: str, at: Size = size, **extra: Any) -> dict[str, Any]:
        return _spec(name, kind, at, model=str(init), data=data, out=str(runs / name.replace(" ", "-")), **extra)

    equal_specs = [
        ("llmforge sft", "sft", "padded batches, no checkpointing", _spec("llmforge sft", "recipe", equal,
                                                                          recipe=same)),
        ("trl SFTTrainer", "sft", "plain script, same settings", trl("trl_sft", "trl sft", chat, equal,
                                                                     own_defaults=False)),
        ("plain pytorch loop", "sft", "no Trainer", _spec("plain loop", "plain_loop", equal, model=str(init),
                                                          data=chat, out=str(runs / "plain"))),
        ("llmforge rm", "rm", "full reward model, same pairs", _spec("llmforge rm", "recipe", equal, recipe=rm)),
        ("trl RewardTrainer", "rm", "plain script, same settings", trl("trl_reward", "trl rm", pairs, equal)),
        ("llmforge dpo", "dpo", "sigmoid, beta 0.1, frozen reference", _spec("llmforge dpo", "recipe", equal,
                                                                             recipe=dpo)),
        ("trl DPOTrainer", "dpo", "plain script, same settings", trl("trl_dpo", "trl dpo", pairs, equal)),
    ]
    default_specs = [
        ("llmforge sft, its defaults", "defaults", "data.packing: auto",
         _spec("llmforge defaults", "recipe", size, recipe=defaults)),
        ("trl SFTTrainer, its defaults", "defaults", "no packing, gradient checkpointing on",
         trl("trl_sft", "trl sft defaults", chat, own_defaults=True)),
        ("llmforge sft-lora, its defaults", "defaults", "LoRA r=16 all-linear, data.packing: auto",
         _spec("llmforge lora", "recipe", size, recipe=lora)),
        ("trl SFTTrainer + peft, its defaults", "defaults", "LoRA r=16 all-linear, no packing, gradient checkpointing on",
         trl("trl_sft", "trl lora", chat, own_defaults=True, lora=True)),
    ]
    best: dict[str, dict[str, Any]] = {}
    repeats = OVERHEAD_REPEATS if extended else 1
    for repeat in range(repeats):
        for name, stage, note, spec in equal_specs:
            log.info("bench: %s (%d of %d)", name, repeat + 1, repeats)
            if "recipe" in spec:  # a finished run would only be reported again: start it over
                shutil.rmtree(spec["recipe"]["output_dir"], ignore_errors=True)
            rates = run_in_child(spec, folder / "workers")
            seen = best[name]["repeat_step_seconds"] if name in best else []
            if name not in best or rates["step_seconds"] < best[name]["step_seconds"]:
                best[name] = {"name": name, "group": "overhead", "stage": stage, "note": note,
                              "steps": equal.steps, **rates}
            best[name]["repeat_step_seconds"] = [*seen, rates["step_seconds"]]
    rows = [best[name] for name, *_ in equal_specs]
    for name, stage, note, spec in default_specs:
        log.info("bench: %s", name)
        rows.append({"name": name, "group": "overhead", "stage": stage, "note": note,
                     **run_in_child(spec, folder / "workers")})
    return rows


def scaling_rows(size: Size, folder: Path, ceiling: float) -> list[dict[str, Any]]:
    """Pretraining on one process (1 and all threads) and on two processes (DDP, a thread each)."""
    rows = []
    cores = os.cpu_count() or 1
    layouts = [("1 process x 1 thread", 1, 1), (f"1 process x {cores} threads", 1, cores)]
    layouts += [("2 processes (DDP) x 1 thread", 2, 1)] if cores >= 2 or torch.cuda.device_count() >= 2 else []
    for name, processes, threads in layouts:
        recipe = base_recipe("pretrain", size, folder / "runs" / f"scaling-{processes}-{threads}",
                             [{"name": "tinytext"}], distributed={"nproc_per_node": processes})
        log.info("bench: scaling, %s", name)
        rates = run_in_child(_spec(f"scaling {name}", "recipe", size, recipe=recipe, threads=threads),
                             folder / "workers")
        rows.append({"name": name, "group": "scaling", "processes": processes, "threads": threads, **rates})
    single = next((r for r in rows if r["processes"] == 1 and r["threads"] == 1), None)
    for row in rows:
        if single and "tokens_per_second" in row:
            row["efficiency"] = row["tokens_per_second"] / (row["processes"] * row["threads"]
                                                             * single["tokens_per_second"])
    return rows


def online_rows(size: Size, folder: Path, init: Path, ceiling: float) -> list[dict[str, Any]]:
    """PPO with padded and continuous-batching generation, and TRL's GRPO and RLOO, at equal completions."""
    rows = []
    for engine in ("padded", "continuous"):
        workload = ppo_workload(size, folder, engine, PPO_PROMPTS, PPO_SAMPLES, PPO_NEW_TOKENS)
        row = measure(workload, size, ceiling, folder)
        rows.append({**row, "group": "online", "name": f"llmforge ppo, {engine} generation",
                     "note": f"{PPO_PROMPTS} prompts x {PPO_SAMPLES} samples x {PPO_NEW_TOKENS} tokens, value head"})
    online = {"completions": PPO_PROMPTS * PPO_SAMPLES, "generations": PPO_SAMPLES, "max_new_tokens": PPO_NEW_TOKENS}
    for kind in ("grpo", "rloo"):
        log.info("bench: trl %s", kind)
        rates = run_in_child(_spec(f"trl {kind}", "trl_online", size, trainer=kind, model=str(init),
                                   out=str(folder / "runs" / f"trl-{kind}"), online=online), folder / "workers")
        completions = PPO_PROMPTS * PPO_SAMPLES
        rows.append({"name": f"trl {kind.upper()}Trainer", "group": "online",
                     "note": f"{completions} completions ({PPO_SAMPLES} per prompt) x {PPO_NEW_TOKENS} tokens", **rates,
                     "completions_per_second": completions / rates["step_seconds"],
                     "prompts_per_second": PPO_PROMPTS / rates["step_seconds"]})
    return rows


CURATE_DOCUMENTS = 20_000


def curate_rows(size: Size, folder: Path) -> list[dict[str, Any]]:
    """The curate stage on the built-in corpus, one step added at a time (each row's cost over the one before
    is that step's), then all steps on two worker processes."""
    source = [{"name": "tinytext", "options": {"num_documents": CURATE_DOCUMENTS}}]
    against = {"against": [{"name": "tinytext", "split": "test"}]}
    variants = [
        ("read, normalise, exact dedup", {"near_dedup": {"enabled": False}}),
        ("+ near dedup (MinHash LSH, 128 permutations)", {}),
        ("+ quality rules", {"quality": {}}),
        ("+ decontamination (13-grams of 2,000 test rows)", {"quality": {}, "decontaminate": against}),
        ("+ split (validation 5%)", {"quality": {}, "decontaminate": against, "split": {"validation": 0.05}}),
        ("all of it, num_proc 2", {"quality": {}, "decontaminate": against, "split": {"validation": 0.05},
                                   "num_proc": 2}),
    ]
    rows = []
    for number, (name, options) in enumerate(variants):
        recipe = {"stage": "curate", "output_dir": str(folder / "runs" / f"curate-{number}"),
                  "model": {"name": size.model}, "data": {"train": source}, "curate": options}
        log.info("bench: curate, %s", name)
        rows.append({"name": name, "group": "curate", **run_in_child(_spec(f"curate {number}", "recipe", size,
                                                                            recipe=recipe), folder / "workers")})
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The ratios the README and the targets are stated in, from rows measured in this one run."""
    by_name = {r["name"]: r for r in rows}
    found: dict[str, Any] = {}

    def speed(name: str) -> float | None:
        row = by_name.get(name)
        return None if row is None else row.get("tokens_per_second") or 1.0 / row["step_seconds"]

    found.update(default_against_options(rows))
    pairs = {"sft": ("llmforge sft", "trl SFTTrainer"), "rm": ("llmforge rm", "trl RewardTrainer"),
             "dpo": ("llmforge dpo", "trl DPOTrainer")}
    versus = {stage: paired_ratios(by_name[ours], by_name[theirs])
              for stage, (ours, theirs) in pairs.items() if ours in by_name and theirs in by_name}
    if versus:
        found["llmforge_vs_trl"] = {stage: statistics.median(ratios) for stage, ratios in versus.items()}
        if any(len(ratios) > 1 for ratios in versus.values()):
            found["llmforge_vs_trl_range"] = {stage: [min(ratios), max(ratios)] for stage, ratios in versus.items()}
    if speed("llmforge sft") and speed("plain pytorch loop"):
        found["llmforge_vs_plain_loop"] = {"sft": by_name["plain pytorch loop"]["step_seconds"]
                                           / by_name["llmforge sft"]["step_seconds"]}
    padded, continuous = by_name.get("llmforge ppo, padded generation"), by_name.get("llmforge ppo, continuous "
                                                                                     "generation")
    if padded and continuous:
        found["ppo_continuous_vs_padded"] = continuous["completions_per_second"] / padded["completions_per_second"]
    served = {r["clients"]: r for r in rows if r["group"] == "serve" and r["name"].startswith("llmforge serve")}
    alone = by_name.get("one at a time (llmforge generate's path)")
    if alone and served:
        top = max(served)
        found["serve_concurrent_vs_one_at_a_time"] = served[top]["tokens_per_second"] / alone["tokens_per_second"]
        found["serve_errors"] = sum(r["errors"] for r in served.values())
    scaling = [r for r in rows if r["group"] == "scaling" and r["processes"] > 1 and "efficiency" in r]
    if scaling:
        found["ddp_efficiency"] = scaling[0]["efficiency"]
    return found


def default_against_options(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How the default batching's speed compares with the fastest batching option measured in the same run.

    The default row is the option `data.packing: auto` resolves to (its `batching`), measured a second time:
    the two runs of that one configuration are averaged into its speed, so the ratio compares configurations
    rather than two samples of the same one (they spread ~25% in quick mode on a 2-core machine)."""
    default = next((r for r in rows if r["group"] == "features" and r["name"] == "default"), None)
    options = {r["name"]: r for r in rows if r["group"] == "features" and r["name"] in BATCHING_OPTIONS
               and "tokens_per_second" in r}
    if default is None or "tokens_per_second" not in default or not options:
        return {}
    chosen = default.get("batching")
    runs = [default["tokens_per_second"]] + ([options[chosen]["tokens_per_second"]] if chosen in options else [])
    speeds = {name: r["tokens_per_second"] for name, r in options.items() if name != chosen}
    speeds[chosen or "default"] = statistics.fmean(runs)
    best = max(speeds, key=speeds.__getitem__)
    return {"sft_default_vs_best_option": speeds[chosen or "default"] / speeds[best], "sft_best_option": best}


def run_benchmarks(folder: Path, quick: bool = True, groups: tuple[str, ...] = DEFAULT_GROUPS,
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
    failed: list[dict[str, Any]] = []

    def attempt(group: str, produce: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """The rows `produce` measures. A workload that fails is listed with its error, and the bench goes on:
        to the next workload in the groups measured one workload at a time (stages, features), to the next
        group in the others, whose rows are compared with one another."""
        try:
            return produce()
        except WorkloadFailed as exc:
            log.warning("bench: %s failed: %s", exc.name, exc.reason)
            failed.append({"group": group, "workload": exc.name, "error": exc.reason, "output_tail": exc.tail})
            return []

    def each(group: str, workloads: list[Workload], at: Size) -> list[dict[str, Any]]:
        return [row for w in workloads for row in attempt(group, lambda w=w: [measure(w, at, ceiling, folder)])]

    def sized() -> list[dict[str, Any]]:
        from llmforge.bench.sizes import size_rows
        from llmforge.memory.device import budget

        result["sizes_matmul_ceiling_flops"] = ceiling_large = hardware.matmul_ceiling((1024, 2048, 4096))
        result["sizes_available_bytes"] = budget("cpu").bytes  # what the plan's `auto` choices saw
        return size_rows(folder, ceiling_large, attempt)

    def served() -> list[dict[str, Any]]:
        from llmforge.bench.serving import serve_rows  # the server's libraries, only when this group runs

        return serve_rows(init)

    longer = compared(size) if steps is None else size
    result["compared_steps"], result["compared_warmup_steps"] = longer.steps, longer.warmup
    producers: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "stages": lambda: each("stages", stage_workloads(size, folder), size),
        "features": lambda: each("features", feature_workloads(longer, folder), longer),
        "overhead": lambda: overhead_rows(size, folder, init, extended=steps is None),
        "scaling": lambda: scaling_rows(size, folder, ceiling),
        "online": lambda: online_rows(size, folder, init, ceiling),
        "serve": served,
        "curate": lambda: curate_rows(size, folder),
        "sizes": sized,
    }
    for group in GROUPS:
        if group in groups:
            result["rows"] += attempt(group, producers[group])
    default = next((r for r in result["rows"] if r["group"] == "features" and r["name"] == "default"), None)
    if default is not None:
        default["batching"] = sft_batching("auto", "auto", "cuda" if on_gpu else "cpu")
        default["note"] += f" = {default['batching']} here"
    result["failed"] = failed
    result.update(summary(result["rows"]))
    shutil.rmtree(folder / "runs", ignore_errors=True)
    result["memory"] = "peak allocated on the GPU" if on_gpu else "peak resident set of the workload's process"
    return result
