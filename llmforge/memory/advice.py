"""Changes that would make a recipe fit, each with its own predicted peak: what the refusal offers instead of
an out-of-memory kill an hour in. Tried from the least change to the most: gradient checkpointing, the
chunked loss, a smaller micro-batch (more accumulation steps, the same rows per optimizer step), LoRA,
and on GPUs QLoRA and ZeRO-3 over more GPUs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmforge.config.schema import ADAPTER_TYPES, RunConfig
from llmforge.memory import Budget, checkpointing, plan


@dataclass(frozen=True)
class Change:
    overrides: tuple[str, ...]  # as a command line would give them
    needed: int  # bytes the device would hold with them

    def __str__(self) -> str:
        return " ".join(self.overrides)


def with_changes(cfg: RunConfig, changes: dict[str, Any]) -> RunConfig:
    """`cfg` with dotted keys set, validated again."""
    from llmforge.config.compose import validate_dict

    data = cfg.model_dump()
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return validate_dict(data)


def candidates(cfg: RunConfig, device: str, available: Budget) -> list[dict[str, Any]]:
    train, tried = cfg.train, []
    checkpointed = checkpointing(cfg, device, available)
    base: dict[str, Any] = {} if checkpointed else {"train.gradient_checkpointing": True}
    if base:
        tried.append(base)
    if not train.chunked_loss:
        tried.append({"train.chunked_loss": True})
        base = {**base, "train.chunked_loss": True}
    factor = 2
    while train.micro_batch_size // factor >= 1:
        tried.append({**base, "train.micro_batch_size": train.micro_batch_size // factor,
                      "train.grad_accum_steps": train.grad_accum_steps * factor})
        factor *= 2
    if cfg.adapter.type == "none" and cfg.stage != "pretrain":
        tried.append({**base, "adapter.type": "lora"})
        tried.append({**base, "adapter.type": "lora", "train.micro_batch_size": 1,
                      "train.grad_accum_steps": train.grad_accum_steps * train.micro_batch_size})
    if device == "cuda":
        if cfg.adapter.type in ADAPTER_TYPES and cfg.adapter.type != "qlora":
            tried.append({**base, "adapter.type": "qlora"})
        for gpus in (2, 4, 8):
            if gpus > cfg.distributed.nproc_per_node:
                tried.append({**base, "distributed.nproc_per_node": gpus, "distributed.strategy": "deepspeed",
                              "distributed.zero_stage": 3})
    return tried


def changes_that_fit(cfg: RunConfig, available: Budget, device: str, limit: int = 4) -> list[Change]:
    """Up to `limit` changes (the least first) whose plan fits `available`."""
    found: list[Change] = []
    for changes in candidates(cfg, device, available):
        try:
            changed = plan(with_changes(cfg, changes), device, available)
        except ValueError:  # a change this stage refuses
            continue
        if changed is not None and changed.fits:
            found.append(Change(tuple(f"{key}={_text(value)}" for key, value in changes.items()), changed.needed))
        if len(found) == limit:
            break
    return found


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
