"""`llmforge bench --only sizes`: every stage at real sizes, measured beside the memory plan's prediction.

The ladder runs each stage at the 135M (SmolLM2), 0.5B (Qwen2.5) and, for the LoRA stages, 1.2B (Llama 3.2
1B) shapes at 512 tokens, and the 0.5B SFT (full and LoRA) and DPO (LoRA) at 2,048 tokens: a warm-up step and
timed steps each, in a process of its own. Every sequence is as long as the row's length (the data is made
long enough and cut to it), so tokens per step are known exactly. Each row reports tokens/s, MFU against the
matmul ceiling measured in the same run, the peak resident memory of its process, the plan's prediction for
it and their ratio, and for PPO the share of time spent generating. The memory savers are rows of their
own (the same workload with one setting changed), and TRL's own trainers run beside llmforge at 0.5B.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("llmforge")

SIZES = {"135M": "smollm2-135m", "0.5B": "qwen2.5-0.5b", "1.2B": "llama3-1b"}
NEW_TOKENS = 64  # tokens generated per completion in the RL rows
STEPS, WARMUP = 3, 1  # a warm-up step and two timed ones
LONG_STEPS, LONG_WARMUP = 2, 0  # the savers at 2,048 tokens x 4 rows: minutes per step, so one timed interval
LORA = {"type": "lora", "r": 16, "alpha": 32, "target_modules": "all-linear"}
RESULT_KEYS = ("step_seconds", "tokens_per_second", "mfu", "peak_mib", "predicted_mib", "generation_share")
PAIRED = 2  # llmforge and TRL runs at equal settings, interleaved, paired run by run


@dataclass
class Rung:
    """One row of the ladder: a stage at a size and length, with the recipe changes that make it what it is."""

    name: str
    stage: str
    size: str
    length: int
    micro_batch: int
    changes: dict[str, Any] = field(default_factory=dict)
    steps: int = STEPS
    warmup: int = WARMUP
    note: str = ""
    environment: dict[str, str] = field(default_factory=dict)  # set in the row's process before it starts

    @property
    def model(self) -> str:
        return SIZES[self.size]

    def sequences_per_step(self) -> int:
        return self.micro_batch * (2 if self.stage in ("rm", "dpo", "kto") else 1)


def ladder() -> list[Rung]:
    """The rows, smallest first (a failure at a large size then leaves the small ones measured)."""
    rungs: list[Rung] = []
    for size in ("135M", "0.5B"):
        rungs += [
            Rung(f"pretrain {size}", "pretrain", size, 512, 2),
            Rung(f"sft full {size}", "sft", size, 512, 2),
            Rung(f"sft lora {size}", "sft", size, 512, 2, {"adapter": LORA}),
            Rung(f"rm lora {size}", "rm", size, 512, 2, {"adapter": LORA}),
            Rung(f"dpo lora {size}", "dpo", size, 512, 1, {"adapter": LORA}),
            Rung(f"grpo lora {size}", "grpo", size, 512, 2, {"adapter": LORA}),
            Rung(f"ppo lora {size}", "ppo", size, 512, 2, {"adapter": LORA}),
        ]
    rungs += [Rung(f"{name} 1.2B", stage, "1.2B", 512, batch, {"adapter": LORA})
              for name, stage, batch in (("sft lora", "sft", 1), ("rm lora", "rm", 1), ("dpo lora", "dpo", 1),
                                         ("grpo lora", "grpo", 2), ("ppo lora", "ppo", 2))]
    rungs += [
        Rung("sft full 0.5B, 2,048 tokens", "sft", "0.5B", 2048, 1),
        Rung("sft lora 0.5B, 2,048 tokens", "sft", "0.5B", 2048, 1, {"adapter": LORA}),
        Rung("dpo lora 0.5B, 2,048 tokens", "dpo", "0.5B", 2048, 1, {"adapter": LORA}),
    ]
    return rungs


def savers() -> list[Rung]:
    """Each memory saver on and off, one setting changed from a ladder row."""
    checkpointed = {"adapter": LORA, "train": {"gradient_checkpointing": True}}
    return [
        Rung("sft lora 0.5B, 2,048 x 4, checkpointing, chunked loss", "sft", "0.5B", 2048, 4, checkpointed,
             LONG_STEPS, LONG_WARMUP, "train.chunked_loss: true (the default)"),
        Rung("sft lora 0.5B, 2,048 x 4, checkpointing, whole logits", "sft", "0.5B", 2048, 4,
             {**checkpointed, "train": {"gradient_checkpointing": True, "chunked_loss": False}},
             LONG_STEPS, LONG_WARMUP, "train.chunked_loss: false"),
        Rung("sft full 0.5B, checkpointing on", "sft", "0.5B", 512, 2, {"train": {"gradient_checkpointing": True}},
             note="train.gradient_checkpointing: true (auto leaves it off here)"),
        Rung("sft lora 0.5B, checkpointing off", "sft", "0.5B", 512, 2,
             {"adapter": LORA, "train": {"gradient_checkpointing": False}},
             note="train.gradient_checkpointing: false (auto turns it on here)"),
        Rung("sft lora 0.5B, glibc's own allocator settings", "sft", "0.5B", 512, 2, {"adapter": LORA},
             note="LLMFORGE_MALLOC_MMAP_THRESHOLD=0 (llmforge's fixed 1 MiB threshold off)",
             environment={"LLMFORGE_MALLOC_MMAP_THRESHOLD": "0"}),
        Rung("sft full 0.5B, glibc's own allocator settings", "sft", "0.5B", 512, 2,
             note="LLMFORGE_MALLOC_MMAP_THRESHOLD=0", environment={"LLMFORGE_MALLOC_MMAP_THRESHOLD": "0"}),
        Rung("dpo lora 0.5B, reference a second copy", "dpo", "0.5B", 512, 1,
             {"adapter": LORA, "dpo": {"ref_model": "INIT_COPY"}},
             note="dpo.ref_model: the start's weights under another name (a second model in memory)"),
        Rung("ppo lora 0.5B, separate critic", "ppo", "0.5B", 512, 2, {"adapter": LORA, "ppo": {"value_model": "INIT"}},
             note="ppo.value_model: the start (a second model with its own adapter)"),
        Rung("ppo lora 0.5B, whole logits", "ppo", "0.5B", 512, 2,
             {"adapter": LORA, "train": {"chunked_loss": False}}, note="train.chunked_loss: false"),
    ]


# ---- data long enough to fill every sequence ---------------------------------------------------------------
def _stories() -> list[str]:
    from llmforge.config.schema import DataSource
    from llmforge.data.sources import load_source

    return [row["text"] for row in load_source(DataSource(name="tinytext")).rows]


def _text_of(tokens: int, rng: random.Random, stories: list[str], tokenizer: Any) -> str:
    """Stories joined until they hold at least `tokens` tokens."""
    parts, count = [], 0
    while count < tokens:
        story = rng.choice(stories)
        parts.append(story)
        count += len(tokenizer(story, add_special_tokens=False)["input_ids"]) + 1
    return " ".join(parts)


def long_data(folder: Path, length: int, rows: int = 48) -> dict[str, Path]:
    """Chats, pairs and prompts whose every sequence is at least `length` tokens once templated (cut to it by
    the stages, as by TRL), written once per length."""
    from llmforge.registry.families import family_for
    from llmforge.registry.tokenizer import tiny_tokenizer

    paths = {kind: folder / f"{kind}-{length}.jsonl" for kind in ("chat", "pairs", "prompts")}
    if all(p.is_file() for p in paths.values()):
        return paths
    tokenizer, stories, rng = tiny_tokenizer(family_for("llama")), _stories(), random.Random(length)
    folder.mkdir(parents=True, exist_ok=True)
    with paths["chat"].open("w") as chat, paths["pairs"].open("w") as pairs, paths["prompts"].open("w") as prompts:
        for index in range(rows):
            answer = _text_of(length + 32, rng, stories, tokenizer)
            chat.write(json.dumps({"messages": [{"role": "user", "content": f"Tell story {index}."},
                                                {"role": "assistant", "content": answer}]}) + "\n")
            question = _text_of(length // 2, rng, stories, tokenizer)
            pairs.write(json.dumps({"prompt": [{"role": "user", "content": question}],
                                    "chosen": [{"role": "assistant", "content": _text_of(length, rng, stories,
                                                                                         tokenizer)}],
                                    "rejected": [{"role": "assistant", "content": _text_of(length, rng, stories,
                                                                                           tokenizer)}]}) + "\n")
            prompt = tokenizer.decode(tokenizer(_text_of(length, rng, stories, tokenizer))["input_ids"]
                                      [:length - NEW_TOKENS - 24])  # room for the template and the completion
            prompts.write(json.dumps({"prompt": [{"role": "user", "content": prompt}], "answer": "7"}) + "\n")
    return paths


# ---- recipes -----------------------------------------------------------------------------------------------
def recipe(rung: Rung, folder: Path, init: dict[str, Path]) -> dict[str, Any]:
    from llmforge.bench.workloads import Size, base_recipe

    data = long_data(folder / "data", rung.length)
    size = Size(rung.model, {}, rung.length, rung.micro_batch, rung.steps, rung.warmup)
    sources = {"pretrain": [{"name": "tinytext"}], "sft": [{"path": str(data["chat"]), "format": "messages"}],
               "rm": [{"path": str(data["pairs"]), "format": "preference"}],
               "dpo": [{"path": str(data["pairs"]), "format": "preference"}],
               "grpo": [{"path": str(data["prompts"]), "format": "prompt"}],
               "ppo": [{"path": str(data["prompts"]), "format": "prompt"}]}[rung.stage]
    online = {"reward_functions": ["final_number"], "max_new_tokens": NEW_TOKENS}
    options = {"grpo": {"grpo": {**online, "num_generations": 2}},
               "ppo": {"ppo": {**online, "value_model": "policy", "rollout_batch_size": rung.micro_batch,
                               "ppo_epochs": 1, "missing_eos_penalty": None}},
               "sft": {"data": {"packing": False}}}.get(rung.stage, {})
    start = str(init[rung.size]) if rung.stage != "pretrain" else rung.model
    built = base_recipe(rung.stage, size, folder / "runs" / rung.name.replace(" ", "-").replace(",", ""), sources,
                        model={"name": start}, **options)
    named = {"INIT": str(init[rung.size]), "INIT_COPY": str(init[f"{rung.size} copy"])}
    for section, values in rung.changes.items():
        values = {key: named.get(value, value) if isinstance(value, str) else value for key, value in values.items()}
        built.setdefault(section, {}).update(values)
    if rung.stage == "pretrain":
        built["model"]["config_overrides"] = {}
    return built


def tokens_per_step(rung: Rung) -> int:
    return rung.sequences_per_step() * rung.length


def flops_per_token(shape: Any, length: int, adapter: bool) -> float:
    """Model FLOPs per trained token: 6 per parameter that multiplies (every layer and the LM head, not the
    embedding lookup) plus attention's 12 L h s; 4 instead of 6 over a frozen base (no weight gradients)."""
    multiplying = shape.parameters - shape.embedding + (shape.embedding if shape.tied else 0)
    per_parameter = 4 if adapter else 6
    return per_parameter * multiplying + (12 if not adapter else 8) * shape.layers * shape.hidden * length


def predicted(built: dict[str, Any]) -> dict[str, Any]:
    """The memory plan of a row's recipe on this machine."""
    from llmforge.config.compose import validate_dict
    from llmforge.memory import plan

    planned = plan(validate_dict(built), "cpu")
    if planned is None:
        return {}
    e = planned.estimate
    return {"predicted_mib": e.peak / 2**20, "predicted_phase": e.peak_phase.name,
            "gradient_checkpointing": e.gradient_checkpointing,
            "predicted_terms_mib": {t.name: round(t.bytes / 2**20) for t in e.peak_phase.terms}}


def measure_rung(rung: Rung, folder: Path, init: dict[str, Path], ceiling: float) -> dict[str, Any]:
    from llmforge.bench.suite import _spec
    from llmforge.bench.worker import run_in_child
    from llmforge.bench.workloads import Size
    from llmforge.config.schema import ModelConfig
    from llmforge.memory.shapes import shape_of

    built = recipe(rung, folder, init)
    plan = predicted(built)
    log.info("bench: %s (plan: %.0f MiB)", rung.name, plan.get("predicted_mib", 0))
    size = Size(rung.model, {}, rung.length, rung.micro_batch, rung.steps, rung.warmup)
    shutil.rmtree(built["output_dir"], ignore_errors=True)  # a finished run would only be read back
    rates = run_in_child(_spec(rung.name, "recipe", size, recipe=built, environment=rung.environment),
                         folder / "workers")
    shutil.rmtree(built["output_dir"], ignore_errors=True)
    row: dict[str, Any] = {"name": rung.name, "group": "sizes", "stage": rung.stage, "size": rung.size,
                           "model": rung.model, "length": rung.length, "micro_batch_size": rung.micro_batch,
                           "note": rung.note, **rates, **plan}
    if rung.stage not in ("grpo", "ppo"):
        row["tokens_per_second"] = tokens_per_step(rung) / row["step_seconds"]
        shape = shape_of(ModelConfig(name=rung.model), rung.stage == "rm")
        adapter = "adapter" in rung.changes
        flops = flops_per_token(shape, rung.length, adapter) * row["tokens_per_second"]
        if rung.stage == "dpo":  # the reference's forward over the same tokens
            flops += 2 * (shape.parameters - shape.embedding) * row["tokens_per_second"]
        row["mfu"] = flops / ceiling
    if "predicted_mib" in row:
        row["predicted_over_measured"] = row["predicted_mib"] / row["peak_mib"]
    log.info("bench: %s: %s", rung.name, json.dumps({k: row.get(k) for k in RESULT_KEYS}))
    return row


# ---- TRL beside llmforge at 0.5B ---------------------------------------------------------------------------
def trl_rows(folder: Path, init: dict[str, Path], ceiling: float, at: str = "0.5B") -> list[dict[str, Any]]:
    """SFT full, SFT LoRA and DPO LoRA at 0.5B and 512 tokens: llmforge and TRL at equal settings (padded rows,
    checkpointing off, the same LoRA), PAIRED times each, interleaved; then each at its own defaults (SFT LoRA)."""
    from llmforge.bench.suite import _spec
    from llmforge.bench.worker import run_in_child
    from llmforge.bench.workloads import Size

    data = long_data(folder / "data", 512)
    cases = [("sft full", Rung(f"sft full {at}", "sft", at, 512, 2), "trl_sft", {"lora": False}),
             ("sft lora", Rung(f"sft lora {at}", "sft", at, 512, 2, {"adapter": LORA}), "trl_sft", {"lora": True}),
             ("dpo lora", Rung(f"dpo lora {at}", "dpo", at, 512, 1, {"adapter": LORA}), "trl_dpo", {"lora": True})]
    rows: list[dict[str, Any]] = []
    for name, rung, kind, extra in cases:
        rung.changes = {**rung.changes, "train": {"gradient_checkpointing": False}}
        size = Size(str(init[at]), {}, 512, rung.micro_batch, rung.steps, rung.warmup)
        ours, theirs = [], []
        for repeat in range(PAIRED):
            log.info("bench: %s, llmforge and TRL (%d of %d)", name, repeat + 1, PAIRED)
            built = recipe(rung, folder, init)
            ours.append(run_in_child(_spec(f"llmforge {name}", "recipe", size, recipe=built), folder / "workers"))
            shutil.rmtree(built["output_dir"], ignore_errors=True)
            source = data["chat"] if kind == "trl_sft" else data["pairs"]
            theirs.append(run_in_child(_spec(f"trl {name}", kind, size, model=str(init[at]), data=str(source),
                                             out=str(folder / "runs" / f"trl-{kind}"), own_defaults=False, **extra),
                                       folder / "workers"))
        tokens = tokens_per_step(rung)
        ratios = [b["step_seconds"] / a["step_seconds"] for a, b in zip(ours, theirs, strict=True)]
        rows.append({"name": f"{name} {at}: llmforge vs TRL, equal settings", "group": "sizes-trl", "stage": rung.stage,
                     "llmforge_tokens_per_second": [tokens / r["step_seconds"] for r in ours],
                     "trl_tokens_per_second": [tokens / r["step_seconds"] for r in theirs],
                     "llmforge_peak_mib": [r["peak_mib"] for r in ours], "trl_peak_mib": [r["peak_mib"] for r in theirs],
                     "speed_ratio": statistics.median(ratios), "speed_ratios": ratios,
                     "memory_ratio": max(r["peak_mib"] for r in ours) / max(r["peak_mib"] for r in theirs)})
    rung = Rung(f"sft lora {at}", "sft", at, 512, 2, {"adapter": LORA})
    built = recipe(rung, folder, init)
    built["data"].pop("packing", None)  # llmforge's own default batching
    size = Size(str(init[at]), {}, 512, 2, STEPS, WARMUP)
    log.info("bench: sft lora %s, each at its own defaults", at)
    ours = run_in_child(_spec("llmforge lora defaults", "recipe", size, recipe=built), folder / "workers")
    theirs = run_in_child(_spec("trl lora defaults", "trl_sft", size, model=str(init[at]), data=str(data["chat"]),
                                out=str(folder / "runs" / "trl-defaults"), own_defaults=True, lora=True),
                          folder / "workers")
    rows.append({"name": f"sft lora {at}: each at its own defaults", "group": "sizes-trl", "stage": "sft",
                 "llmforge_peak_mib": [ours["peak_mib"]], "trl_peak_mib": [theirs["peak_mib"]],
                 "llmforge_tokens_per_second": [tokens_per_step(rung) / ours["step_seconds"]],
                 "trl_tokens_per_second": [tokens_per_step(rung) / theirs["step_seconds"]],
                 "memory_ratio": ours["peak_mib"] / theirs["peak_mib"],
                 "speed_ratio": theirs["step_seconds"] / ours["step_seconds"]})
    return rows


def initial_models(folder: Path) -> dict[str, Path]:
    """Each size's initial weights saved once, the common start of llmforge's rows and TRL's, and the same folder
    under a second name ("SIZE copy", a link): a model named differently is loaded as a model of its own."""
    import torch

    from llmforge.config.schema import ModelConfig
    from llmforge.registry import load_model

    found = {}
    for size, preset in SIZES.items():
        out = folder / "init" / size
        if not (out / "config.json").is_file():
            torch.manual_seed(0)
            loaded = load_model(ModelConfig(name=preset))
            loaded.model.save_pretrained(out)
            loaded.tokenizer.save_pretrained(out)
            del loaded
        found[size] = out
        copy = folder / "init" / f"{size}-copy"
        if not copy.exists():
            copy.symlink_to(out.resolve(), target_is_directory=True)
        found[f"{size} copy"] = copy
    return found


def size_rows(folder: Path, ceiling: float, attempt: Any) -> list[dict[str, Any]]:
    """The ladder, the savers and the TRL comparison; `attempt(group, produce)` lists a failing row and goes on."""
    init = initial_models(folder)
    rows: list[dict[str, Any]] = []
    for rung in ladder() + savers():
        rows += attempt("sizes", lambda rung=rung: [measure_rung(rung, folder, init, ceiling)])
    rows += attempt("sizes", lambda: trl_rows(folder, init, ceiling))
    return rows
