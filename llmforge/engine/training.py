"""Training a stage: resume or start, train, evaluate, publish final/, with the parts the stage built.

Shared by every training stage: a stage only supplies its parts (engine/parts.py); checkpointing,
logging, resume, the NaN guard and the atomic publication of final/ are done here, the same way for
transformers' Trainer, every TRL trainer and our PPO loop.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

from transformers import PrinterCallback, ProgressCallback, Trainer, set_seed

from llmforge.config.schema import RunConfig
from llmforge.config.stages import StageSpec
from llmforge.distributed.state import process_state
from llmforge.distributed.strategy import strategy_arguments
from llmforge.engine import checkpoints
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
from llmforge.engine.console import ConsoleCallback, banner
from llmforge.engine.files import disk_full, disk_full_message, folder_fingerprint, publish_dir
from llmforge.engine.parts import StageParts
from llmforge.engine.paths import RunOutcome, RunPaths
from llmforge.engine.preemption import PreemptionCallback, Requested
from llmforge.engine.run_record import MetricsLog, RunRecord
from llmforge.engine.stopped import Stopped
from llmforge.engine.tracking import RunLog, open_trackers
from llmforge.errors import UserError
from llmforge.machine import machine_info
from llmforge.registry import family_of
from llmforge.registry.folders import save_model_folder

log = logging.getLogger("llmforge")


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


def train(cfg: RunConfig, spec: StageSpec, paths: RunPaths, record: RunRecord, state: Any) -> RunOutcome:
    main = state.is_main_process
    resume = _choose_resume(cfg, paths, state)
    set_seed(cfg.seed)
    parts: StageParts = spec.build(cfg)
    args = training_arguments(cfg, paths.checkpoints, parts.eval_dataset is not None, parts.args_class,
                              **strategy_arguments(cfg, parts.layer_class), **parts.args_extra)
    parts.model_info["gradient_checkpointing"] = bool(args.activation_checkpointing)
    metrics_log = MetricsLog(paths.metrics)
    resume_step = checkpoints.step_of(resume) if resume is not None else None
    if main:
        if resume is not None:
            offset = checkpoints.read_marker(resume).get("metrics_offset")
            metrics_log.truncate_to(offset) if offset is not None else metrics_log.truncate_after(resume_step)
        else:
            paths.metrics.unlink(missing_ok=True)
    trackers = open_trackers(cfg.logging, paths.root, resume_step, cfg.model_dump(mode="json")) if main else []
    run_log = RunLog(metrics_log, trackers)
    preemption = PreemptionCallback()
    Requested.install()
    trainer = _make_trainer(cfg, parts, args, paths, run_log, preemption)
    if main:
        print(banner(cfg, parts.model_info, parts.data, resume, state.num_processes), file=sys.stderr, flush=True)
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
            if preemption.stopped_by is not None:
                raise Stopped(preemption.stopped_by, trainer.state.global_step, _newest(paths))
        except TrainingComplete:  # resumed from the last step's checkpoint: its weights are the result
            trained, final_metrics = False, {}
            log.info("%s holds the last step; publishing it.", resume.name)
            load_best_weights(trainer, cfg, paths)
        except KeyError as exc:
            if "metric_for_best_model" not in str(exc):
                raise
            raise UserError(f"checkpoint.best_metric '{cfg.checkpoint.best_metric}' is not among this stage's "
                            f"evaluation metrics: {str(exc).split('available evaluation metrics are: ')[-1][:300]}"
                            ) from None
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
        if main:
            final_metrics["train_wall_seconds"] = round(time.time() - started, 2)
            record.update(status="completed", final_metrics=final_metrics,
                          final_fingerprint=folder_fingerprint(paths.final), **selection_record(trainer, cfg))
            if trackers:
                run_log.finish(final_metrics, artifacts_of(paths))
            log.info("Done: %s", paths.final)
    except Stopped as exc:
        if main:
            record.update(status="interrupted", error=str(exc))
        raise
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
    return RunOutcome(paths.root, "completed", final_metrics, is_main=main)


def artifacts_of(paths: RunPaths) -> list[Path]:
    """What a tracker keeps of a finished run: run.json and its curves."""
    from llmforge.report.plots import plot_run

    return [paths.root / "run.json", *plot_run(paths.root, paths.root / "plots")]


def _newest(paths: RunPaths) -> str | None:
    complete = checkpoints.complete_checkpoints(paths.checkpoints)
    return str(complete[-1]) if complete else None


def _kept(paths: RunPaths) -> str:
    last = checkpoints.complete_checkpoints(paths.checkpoints)
    return f"The last good checkpoint, {last[-1]}, is kept." if last else "No checkpoint was saved before it."


def _make_trainer(cfg: RunConfig, parts: StageParts, args: Any, paths: RunPaths, run_log: RunLog,
                  preemption: PreemptionCallback) -> Any:
    callbacks = [*parts.callbacks, CheckpointCallback(paths.checkpoints, cfg.checkpoint.keep_last, paths.metrics),
                 MetricsCallback(run_log), NanGuardCallback(), StopAtMaxSteps(), preemption]
    if cfg.train.early_stopping is not None and args.metric_for_best_model:
        from transformers import EarlyStoppingCallback

        callbacks.append(EarlyStoppingCallback(cfg.train.early_stopping.patience, cfg.train.early_stopping.min_delta))
    callbacks.append(ConsoleCallback())
    kwargs = dict(parts.trainer_kwargs)
    if parts.data_collator is not None:  # GRPOTrainer has no collator argument
        kwargs["data_collator"] = parts.data_collator
    trainer = parts.trainer_class(
        model=parts.model,
        args=args,
        train_dataset=parts.train_dataset,
        eval_dataset=parts.eval_dataset,
        processing_class=parts.tokenizer,
        callbacks=callbacks,
        **kwargs,
    )
    if isinstance(trainer, Trainer):  # ours shows numbers as numbers, a bar on a terminal, a line per log in a file
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    return trainer


def _evaluate(trainer: Any, parts: StageParts) -> dict[str, float]:
    """The held-out metrics of the published weights: the evaluation the trainer made at that step when it made
    one (the last step, or the best checkpoint's when checkpoint.best_metric chose it; the state's log history
    is the same on every rank, so all ranks agree on whether to evaluate again), else one made now."""
    if parts.eval_dataset is None:
        return {}
    state = trainer.state
    step = state.best_global_step if selects_best(trainer) else state.global_step
    done = next((row for row in reversed(state.log_history) if "eval_loss" in row and row.get("step") == step), None)
    metrics = {k: v for k, v in done.items() if k.startswith("eval_")} if done else dict(trainer.evaluate())
    if parts.language_model and "eval_loss" in metrics:
        metrics["eval_perplexity"] = perplexity(metrics["eval_loss"])
    return metrics


def selects_best(trainer: Any) -> bool:
    args = getattr(trainer, "args", None)
    return bool(getattr(args, "load_best_model_at_end", False) and trainer.state.best_global_step)


def selection_record(trainer: Any, cfg: RunConfig) -> dict[str, Any]:
    """What run.json says about model selection: which step final/ holds and why."""
    state = trainer.state
    if not cfg.checkpoint.best_metric:
        return {}
    return {"selection": {"metric": cfg.checkpoint.best_metric, "best_value": state.best_metric,
                          "best_step": state.best_global_step, "last_step": state.global_step,
                          "stopped_early": state.global_step < state.max_steps}}


def load_best_weights(trainer: Any, cfg: RunConfig, paths: RunPaths) -> None:
    """Put the best checkpoint's weights into the model when training ended without transformers doing it (a
    run resumed from its last checkpoint publishes without training). Single-process and DDP checkpoints are
    HF folders: their safetensors load into the unwrapped model."""
    if not (isinstance(trainer, Trainer) and selects_best(trainer)):
        return
    folder = paths.checkpoints / f"checkpoint-{trainer.state.best_global_step}"
    model = trainer.accelerator.unwrap_model(trainer.model)
    adapter, full = folder / "adapter_model.safetensors", folder / "model.safetensors"
    if cfg.distributed.strategy != "ddp" or not (adapter.is_file() or full.is_file()):
        raise UserError(f"{folder} is the best checkpoint, but a sharded ({cfg.distributed.strategy}) checkpoint "
                        "cannot be published without training: resume from the checkpoint before the last one.")
    from safetensors.torch import load_file

    if adapter.is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(adapter)))
    else:
        from safetensors.torch import load_model

        load_model(model, str(full), strict=False)


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
