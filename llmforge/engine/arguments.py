"""Recipe -> TrainingArguments (or a TRL config class, which subclasses it).

The one place where recipe keys meet Trainer argument names, so every stage trains,
checkpoints, logs and evaluates the same way.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments

from llmforge.config.schema import RunConfig
from llmforge.errors import UserError
from llmforge.memory import checkpointing
from llmforge.precision import Precision, decide


def precision_of(cfg: RunConfig) -> Precision:
    """The run's one precision decision (llmforge.precision), from model.dtype and train.mixed_precision."""
    return decide(cfg.model.dtype, cfg.train.mixed_precision)


def scheduler_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """Extra arguments some schedulers need, from recipe keys."""
    if cfg.train.scheduler == "cosine_with_min_lr":
        return {"min_lr_rate": cfg.train.min_lr_ratio}
    return {}


def liger_available() -> bool:
    """Liger's Triton kernels run here: a CUDA GPU and the liger-kernel package."""
    import importlib.util

    return torch.cuda.is_available() and importlib.util.find_spec("liger_kernel") is not None


def selection_arguments(cfg: RunConfig, evaluate_during: bool) -> dict[str, Any]:
    """checkpoint.best_metric through transformers' own model selection: the best checkpoint tracked in the
    trainer state (saved with every checkpoint), its weights loaded at the end; callback state (early
    stopping's patience) restored on resume, so a resumed run stops where an uninterrupted one would."""
    best = cfg.checkpoint.best_metric
    if best is None or not evaluate_during:
        return {"restore_callback_states_from_checkpoint": True}
    return {"metric_for_best_model": best, "greater_is_better": cfg.checkpoint.greater_is_better(),
            "load_best_model_at_end": True, "restore_callback_states_from_checkpoint": True}


def training_arguments(
    cfg: RunConfig, checkpoint_dir: Path, has_eval: bool, args_class: type = TrainingArguments, **extra: Any
) -> TrainingArguments:
    train = cfg.train
    if train.liger_kernel and not liger_available():
        raise UserError("train.liger_kernel needs a CUDA GPU and the liger-kernel package "
                        "(pip install liger-kernel); set it to false here.")
    evaluate_during = has_eval and cfg.eval.every_steps is not None
    kwargs: dict[str, Any] = dict(
        output_dir=str(checkpoint_dir),
        seed=cfg.seed,
        data_seed=cfg.seed,
        max_steps=train.max_steps,
        num_train_epochs=train.epochs,
        per_device_train_batch_size=train.micro_batch_size,
        per_device_eval_batch_size=cfg.eval.micro_batch_size or train.micro_batch_size,
        gradient_accumulation_steps=train.grad_accum_steps,
        learning_rate=train.lr,
        lr_scheduler_type=train.scheduler,
        lr_scheduler_kwargs=scheduler_kwargs(cfg),
        warmup_steps=train.warmup_ratio,  # a float in [0, 1) is a ratio of total steps
        max_grad_norm=train.max_grad_norm,
        weight_decay=train.weight_decay,
        optim=train.optimizer,
        activation_checkpointing=checkpointing(cfg),
        torch_compile=train.compile,
        use_liger_kernel=train.liger_kernel,
        logging_steps=cfg.logging.every_steps,
        logging_nan_inf_filter=False,  # a NaN must reach the guard, not be averaged away
        report_to="none",  # tensorboard is attached by the engine, pointed at output_dir/tensorboard
        save_strategy="steps",
        save_steps=cfg.checkpoint.every_steps,
        save_total_limit=None,  # rotation happens after the completion marker (engine.checkpoints)
        eval_strategy="steps" if evaluate_during else "no",
        eval_steps=cfg.eval.every_steps if evaluate_during else None,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=not sys.stderr.isatty(),
        include_num_input_tokens_seen="non_padding",
        **precision_of(cfg).trainer_flags(),
        **selection_arguments(cfg, evaluate_during),
    )
    kwargs.update(extra)
    return args_class(**kwargs)
