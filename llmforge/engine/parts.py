"""What a training stage hands the engine: a model, data and the trainer class to drive them.

A stage never writes its own loop, checkpointing or logging. Its `build` returns these parts
(transformers' Trainer or a TRL trainer, or a trainer with the same interface such as our PPO),
and the engine trains, checkpoints, resumes, evaluates and saves. The stage itself is declared
in config/stages.py's terms; this layer knows no stage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainingArguments


@dataclass
class StageParts:
    model: Any
    tokenizer: Any
    train_dataset: Any
    eval_dataset: Any = None
    data_collator: Any = None
    trainer_class: type = Trainer
    args_class: type = TrainingArguments
    args_extra: dict[str, Any] = field(default_factory=dict)
    trainer_kwargs: dict[str, Any] = field(default_factory=dict)
    parents: list[dict[str, Any]] = field(default_factory=list)  # lineage: what this run was made from
    data: dict[str, Any] = field(default_factory=dict)  # data fingerprints and counts
    model_info: dict[str, Any] = field(default_factory=dict)
    layer_class: str | None = None  # the decoder layer FSDP wraps (from the registry family)
    final_eval: Callable[[Path], dict[str, float]] | None = None  # metrics of the published final/ (main rank)
    # adds files to final/ before it is published (main rank; gets the staging folder, returns metrics)
    finalize: Callable[[Path], dict[str, float]] | None = None
    language_model: bool = True  # eval_loss is a next-token loss (so it has a perplexity)
    callbacks: list[Any] = field(default_factory=list)  # the stage's own, called before the engine's
