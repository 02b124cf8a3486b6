"""Where a run's metrics go: metrics.jsonl always, and the trackers `logging.report_to` names.

Every record passes through one `RunLog`: the line appended to metrics.jsonl is the very record each
tracker receives (eval perplexity included), so the trackers and the file never disagree, and a
tracker's writer lives as long as the run, not as long as one `trainer.train()` call (transformers'
own TensorBoard callback closes its writer at the end of training and opens a second event file under
the checkpoint folder for the final evaluation).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Protocol

from llmforge.engine.run_record import MetricsLog

log = logging.getLogger("llmforge")


class Tracker(Protocol):
    def log(self, record: dict[str, Any]) -> None: ...  # a metrics record; it carries `step`

    def close(self) -> None: ...


def numeric(record: dict[str, Any]) -> dict[str, float]:
    """The record's finite numbers, without its step (what a tracker can plot)."""
    return {k: float(v) for k, v in record.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class TensorBoardTracker:
    """One event stream per run under output_dir/tensorboard; a resumed run purges the steps it redoes."""

    def __init__(self, folder: Path, resume_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder), purge_step=resume_step + 1 if resume_step else None)

    def log(self, record: dict[str, Any]) -> None:
        step = int(record.get("step", 0))
        for key, value in numeric(record).items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class RunLog:
    """metrics.jsonl plus the trackers; only the main process makes one."""

    def __init__(self, metrics: MetricsLog, trackers: list[Tracker] | None = None) -> None:
        self.metrics = metrics
        self.trackers = list(trackers or [])

    def append(self, record: dict[str, Any]) -> None:
        self.metrics.append(record)
        for tracker in self.trackers:
            try:
                tracker.log(record)
            except Exception as exc:  # a tracker must not stop training; the metrics file has it all
                log.warning("%s could not log step %s: %s", type(tracker).__name__, record.get("step"), exc)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()
        self.trackers = []


def open_trackers(report_to: list[str], output_dir: Path, resume_step: int | None) -> list[Tracker]:
    trackers: list[Tracker] = []
    if "tensorboard" in report_to:
        trackers.append(TensorBoardTracker(output_dir / "tensorboard", resume_step))
    return trackers
