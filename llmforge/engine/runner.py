"""Run one stage end to end: resume or skip, train, evaluate, publish `final/`, record it all.

Shared by every stage; a stage only supplies its parts (see stages.base).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import Trainer, set_seed

from llmforge.config.schema import RunConfig
from llmforge.distributed.state import process_state
from llmforge.distributed.strategy import strategy_arguments
from llmforge.engine import capabilities, checkpoints
from llmforge.engine.arguments import precision_of, training_arguments
from llmforge.engine.callbacks import (
    CheckpointCallback,
    MetricsCallback,
    NanGuardCallback,
    NonFiniteLoss,
    StopAtMaxSteps,
    TrainingComplete,
    perplexity,
)
from llmforge.engine.files import (
    disk_full,
    disk_full_message,
    folder_fingerprint,
    publish_dir,
    writable_or_explain,
)
from llmforge.engine.run_record import MetricsLog, OutputLock, RunRecord
from llmforge.engine.tracking import RunLog, open_trackers
from llmforge.errors import UserError
from llmforge.machine import machine_info
from llmforge.registry import family_of
from llmforge.registry.folders import save_model_folder
from llmforge.stages import STAGES
from llmforge.stages.base import StageParts

log = logging.getLogger("llmforge")


@dataclass
class RunOutcome:
    output_dir: Path
    status: str  # completed | skipped
    metrics: dict[str, Any]
    is_main: bool = True


class RunPaths:
    def __init__(self, output_dir: str) -> None:
        self.root = Path(output_dir)
        self.checkpoints = self.root / "checkpoints"
        self.final = self.root / "final"
        self.staging = self.root / ".final-staging"
        self.metrics = self.root / "metrics.jsonl"


def check_runnable(cfg: RunConfig, record: RunRecord | None = None) -> bool:
    """Checks made before any process starts; True when this exact run already completed."""
    if cfg.stage not in STAGES:
        raise UserError(f"stage '{cfg.stage}' is not available in this version of llmforge; "
                        f"available: {', '.join(STAGES)}.")
    paths = RunPaths(cfg.output_dir)
    capabilities.check(cfg)
    if (record or RunRecord(paths.root, cfg)).finished_before():
        log.info("%s already completed this run; nothing to do (final model: %s).", paths.root, paths.final)
        return True
    return False


def run_stage(cfg: RunConfig) -> RunOutcome:
    paths = RunPaths(cfg.output_dir)
    record = RunRecord(paths.root, cfg)
    if check_runnable(cfg, record):
        return RunOutcome(paths.root, "skipped", record.previous.get("final_metrics", {}))
    stage = STAGES[cfg.stage]
    state = process_state()
    if state.is_main_process:
        writable_or_explain(paths.root)
    lock = OutputLock(paths.root) if state.is_main_process else contextlib.nullcontext()
    with lock:
        return _train(cfg, stage.build, paths, record, state)


def _choose_resume(cfg: RunConfig, paths: RunPaths, state: Any) -> Path | None:
    """The main process picks (setting damaged checkpoints aside, clearing debris), then the others."""
    resume = None
    if state.is_main_process:
        resume = checkpoints.resume_point(cfg.checkpoint.resume, paths.checkpoints, main=True)
        for debris in checkpoints.discard_incomplete(paths.checkpoints):
            log.warning("Removed %s: it was interrupted while saving.", debris)
    state.wait_for_everyone()
    if not state.is_main_process:
        resume = checkpoints.resume_point(cfg.checkpoint.resume, paths.checkpoints, main=False)
    return resume


def _train(cfg: RunConfig, build: Any, paths: RunPaths, record: RunRecord, state: Any) -> RunOutcome:
    main = state.is_main_process
    resume = _choose_resume(cfg, paths, state)
    set_seed(cfg.seed)
    parts: StageParts = build(cfg)
    args = training_arguments(cfg, paths.checkpoints, parts.eval_dataset is not None, parts.args_class,
                              **strategy_arguments(cfg, parts.layer_class), **parts.args_extra)
    metrics_log = MetricsLog(paths.metrics)
    resume_step = checkpoints.step_of(resume) if resume is not None else None
    if main:
        if resume is not None:
            offset = checkpoints.read_marker(resume).get("metrics_offset")
            metrics_log.truncate_to(offset) if offset is not None else metrics_log.truncate_after(resume_step)
        else:
            paths.metrics.unlink(missing_ok=True)
    run_log = RunLog(metrics_log, open_trackers(cfg.logging.report_to, paths.root, resume_step) if main else [])
    trainer = _make_trainer(cfg, parts, args, paths, run_log)
    if main:
        record.start(parents=parts.parents, data=parts.data, model=parts.model_info,
                     precision=precision_of(cfg).record(), machine=machine_info())
        if resume is not None:
            record.note_resume(resume)
            log.info("Resuming from %s.", resume)
    started = time.time()
    try:
        trained = True
        try:
            final_metrics = dict(trainer.train(resume_from_checkpoint=str(resume) if resume else None).metrics)
        except TrainingComplete:  # resumed from the last step's checkpoint: its weights are the result
            trained, final_metrics = False, {}
            log.info("%s holds the last step; publishing it.", resume.name)
        whole = metrics_log.mean_loss() if main and resume is not None else None
        if whole is not None:  # a resumed trainer saw only the steps after its checkpoint; the log saw them all
            final_metrics["train_loss"] = whole
            if not trained:
                run_log.append({"step": trainer.state.global_step, "train_loss": whole})
        final_metrics.update(_evaluate(trainer, parts))
        final_metrics.update(_publish_final(trainer, parts, paths, main))
        if main and parts.final_eval is not None:
            extra = parts.final_eval(paths.final)
            trainer.log(extra)
            final_metrics.update(extra)
    except NonFiniteLoss as exc:
        if main:
            record.update(status="failed", error=str(exc))
        dtype_hint = "" if cfg.model.dtype in ("auto", "float32") else ", or use model.dtype=float32"
        raise UserError(f"Training stopped: {exc}. {_kept(paths)} Lower train.lr, raise train.warmup_ratio, or "
                        f"check the data for broken rows{dtype_hint}.") from None
    except BaseException as exc:
        full = disk_full(exc)
        if main:
            with contextlib.suppress(OSError):  # the disk may be too full to say so in run.json
                record.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        if full:
            raise UserError(disk_full_message(paths.root, paths.checkpoints) + f" {_kept(paths)} Free space "
                            "and run the same command again: it resumes from there.") from None
        raise
    finally:
        run_log.close()
    if main:
        final_metrics["train_wall_seconds"] = round(time.time() - started, 2)
        record.update(status="completed", final_metrics=final_metrics,
                      final_fingerprint=folder_fingerprint(paths.final))
        log.info("Done: %s", paths.final)
    return RunOutcome(paths.root, "completed", final_metrics, is_main=main)


def _kept(paths: RunPaths) -> str:
    last = checkpoints.complete_checkpoints(paths.checkpoints)
    return f"The last good checkpoint, {last[-1]}, is kept." if last else "No checkpoint was saved before it."


def _make_trainer(cfg: RunConfig, parts: StageParts, args: Any, paths: RunPaths, run_log: RunLog) -> Any:
    callbacks = [CheckpointCallback(paths.checkpoints, cfg.checkpoint.keep_last, paths.metrics),
                 MetricsCallback(run_log), NanGuardCallback(), StopAtMaxSteps()]
    kwargs = dict(parts.trainer_kwargs)
    if parts.data_collator is not None:  # GRPOTrainer has no collator argument
        kwargs["data_collator"] = parts.data_collator
    return parts.trainer_class(
        model=parts.model,
        args=args,
        train_dataset=parts.train_dataset,
        eval_dataset=parts.eval_dataset,
        processing_class=parts.tokenizer,
        callbacks=callbacks,
        **kwargs,
    )


def _evaluate(trainer: Any, parts: StageParts) -> dict[str, float]:
    """The held-out metrics of the final weights: the evaluation the trainer made at the last step when it
    made one (eval.every_steps; its state's log history is the same on every rank, so all ranks agree on
    whether to evaluate again), else one made now."""
    if parts.eval_dataset is None:
        return {}
    last = next((row for row in reversed(trainer.state.log_history) if "eval_loss" in row), None)
    if last is not None and last.get("step") == trainer.state.global_step:
        metrics = {k: v for k, v in last.items() if k.startswith("eval_")}
    else:
        metrics = dict(trainer.evaluate())
    if parts.language_model and "eval_loss" in metrics:
        metrics["eval_perplexity"] = perplexity(metrics["eval_loss"])
    return metrics


def _publish_final(trainer: Any, parts: StageParts, paths: RunPaths, main: bool) -> dict[str, float]:
    """Write final/ in a staging folder and rename it in, so a kill never leaves half a model.

    The full state dict is gathered from every rank (FSDP shards, ZeRO-3 partitions), so
    final/ is a plain HF folder whatever the strategy.
    """
    model, state_dict = _final_model(trainer)
    metrics: dict[str, float] = {}
    if main:
        save_model_folder(paths.staging, model, parts.tokenizer, family_of(model), state_dict=state_dict,
                          published_at=paths.final)
        if parts.finalize is not None:
            metrics = parts.finalize(paths.staging)
        publish_dir(paths.staging, paths.final)
    process_state().wait_for_everyone()
    return metrics


def _final_model(trainer: Any) -> tuple[Any, dict[str, Any]]:
    """(the model final/ holds, its full state dict); collective: every rank must call it."""
    if isinstance(trainer, Trainer):
        return (trainer.accelerator.unwrap_model(trainer.model),
                trainer.accelerator.get_state_dict(trainer.model_wrapped))
    return trainer.final_model()  # stages with their own loop (ppo) say which of their models is the result
