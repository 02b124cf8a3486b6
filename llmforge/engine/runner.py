"""Run one stage end to end: skip it when done, else train it or let it produce its output, recorded in run.json.

The engine knows no stage: whoever runs one (the CLI, a pipeline, the benchmark) looks its declaration up
(config/stages.py) and hands it here. A training stage builds parts the engine trains (engine/training.py);
a producing stage (its output a dataset or a report) writes into a staging folder that becomes final/
once complete, with the same run.json, lineage, fingerprints, lock and skip-when-done as every stage.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time

from llmforge.config.schema import RunConfig
from llmforge.config.stages import StageSpec
from llmforge.distributed.state import process_state
from llmforge.engine import capabilities
from llmforge.engine.files import (
    disk_full,
    disk_full_message,
    folder_fingerprint,
    publish_dir,
    writable_or_explain,
)
from llmforge.engine.paths import RunOutcome, RunPaths
from llmforge.engine.run_record import OutputLock, RunRecord
from llmforge.errors import UserError
from llmforge.machine import machine_info

log = logging.getLogger("llmforge")

__all__ = ["RunOutcome", "RunPaths", "check_runnable", "run_stage"]


def check_runnable(cfg: RunConfig, record: RunRecord | None = None) -> bool:
    """Checks made before any process starts; True when this exact run already completed."""
    paths = RunPaths(cfg.output_dir)
    capabilities.check(cfg)
    if (record or RunRecord(paths.root, cfg)).finished_before():
        log.info("%s already completed this run; nothing to do (final output: %s).", paths.root, paths.final)
        return True
    return False


def run_stage(cfg: RunConfig, spec: StageSpec) -> RunOutcome:
    paths = RunPaths(cfg.output_dir)
    record = RunRecord(paths.root, cfg)
    if check_runnable(cfg, record):
        return RunOutcome(paths.root, "skipped", record.previous.get("final_metrics", {}))
    state = process_state()
    if state.is_main_process:
        writable_or_explain(paths.root)
    lock = OutputLock(paths.root) if state.is_main_process else contextlib.nullcontext()
    with lock:
        if spec.trains:
            from llmforge.engine.training import train  # Trainer and TRL: not needed to check or launch a run

            return train(cfg, spec, paths, record, state)
        if not state.is_main_process:  # a producing stage runs on one process
            state.wait_for_everyone()
            return RunOutcome(paths.root, "completed", {}, is_main=False)
        outcome = produce(cfg, spec, paths, record)
        state.wait_for_everyone()
        return outcome


def produce(cfg: RunConfig, spec: StageSpec, paths: RunPaths, record: RunRecord) -> RunOutcome:
    """A stage whose output is a dataset or a report: `spec.produce(cfg, staging, work)` fills the staging
    folder (and keeps whatever lets it resume in `work/`), then it is published as final/."""
    record.start(parents=[], data={}, model={}, machine=machine_info(), output=spec.output)
    started = time.time()
    shutil.rmtree(paths.staging, ignore_errors=True)
    paths.staging.mkdir(parents=True)
    paths.work.mkdir(parents=True, exist_ok=True)
    try:
        result = spec.produce(cfg, paths.staging, paths.work) or {}
        publish_dir(paths.staging, paths.final)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        if disk_full(exc):
            raise UserError(disk_full_message(paths.root, paths.checkpoints) + " Free space and run the same "
                            "command again.") from None
        raise
    metrics = dict(result.pop("metrics", {}))
    metrics["train_wall_seconds"] = round(time.time() - started, 2)
    record.update(status="completed", final_metrics=metrics, final_fingerprint=folder_fingerprint(paths.final),
                  **result)
    log.info("Done: %s", paths.final)
    return RunOutcome(paths.root, "completed", metrics)
