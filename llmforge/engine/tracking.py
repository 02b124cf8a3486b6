"""Where a run's metrics go: metrics.jsonl always, and the trackers `logging.report_to` names.

Every record passes through one `RunLog`: the line appended to metrics.jsonl is the very record each
tracker receives (eval perplexity included), so the trackers and the file never disagree, and a
tracker's writer lives as long as the run, not as long as one `trainer.train()` call (transformers'
own TensorBoard callback closes its writer at the end of training and opens a second event file under
the checkpoint folder for the final evaluation).

Each tracker logs the resolved config once, every record with its step, the final metrics, and the run's
plots as artifacts where it keeps them. A tracker run's id is kept in output_dir/tracking.json, so a
resumed run continues the same MLflow run and the same W&B run instead of starting new ones. In a pipeline,
stages are grouped: MLflow runs nest under the pipeline's parent run, W&B runs share the pipeline's group
(the pipeline passes both through the environment, so launched workers see them too).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Protocol

from llmforge.engine.files import atomic_write_json
from llmforge.engine.run_record import MetricsLog

log = logging.getLogger("llmforge")
IDS_FILE = "tracking.json"
MLFLOW_URI_ENV, MLFLOW_PARENT_ENV, WANDB_GROUP_ENV = "LLMFORGE_MLFLOW_URI", "LLMFORGE_MLFLOW_PARENT", "LLMFORGE_WANDB_GROUP"


class Tracker(Protocol):
    def log(self, record: dict[str, Any]) -> None: ...  # a metrics record; it carries `step`

    def finish(self, final_metrics: dict[str, Any], artifacts: list[Path]) -> None: ...

    def close(self) -> None: ...


def numeric(record: dict[str, Any]) -> dict[str, float]:
    """The record's finite numbers, without its step (what a tracker can plot)."""
    return {k: float(v) for k, v in record.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as dotted keys with short string values (MLflow params)."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value)[:500] if not isinstance(value, str) else value[:500]
    return flat


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

    def finish(self, final_metrics: dict[str, Any], artifacts: list[Path]) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def mlflow_uri(output_dir: Path) -> str:
    """MLFLOW_TRACKING_URI, else the pipeline's store, else a SQLite store in the run folder."""
    return (os.environ.get("MLFLOW_TRACKING_URI") or os.environ.get(MLFLOW_URI_ENV)
            or f"sqlite:///{(Path(output_dir) / 'mlflow.db').resolve()}")


def mlflow_experiment(client: Any, uri: str, name: str) -> str:
    """The id of experiment `name`, created if new. In a SQLite store its artifacts go beside the database
    (MLflow's own default is ./mlruns under whatever folder the command ran in)."""
    experiment = client.get_experiment_by_name(name)
    if experiment:
        return experiment.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///"):]).parent / "mlflow-artifacts").resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


class MLflowTracker:
    """A run in an MLflow store; the same one again when the llmforge run resumes."""

    def __init__(self, output_dir: Path, settings: Any, config: dict[str, Any], ids: dict[str, Any]) -> None:
        from mlflow import MlflowClient

        self.uri = mlflow_uri(output_dir)
        self.client = MlflowClient(self.uri)
        known = ids.get("mlflow") or {}
        if known.get("run_id") and known.get("uri") == self.uri:
            self.run_id = known["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            experiment_id = mlflow_experiment(self.client, self.uri, settings.project)
            tags = {**settings.tags, "llmforge.stage": config.get("stage", ""),
                    "llmforge.output_dir": str(Path(output_dir).resolve())}
            if os.environ.get(MLFLOW_PARENT_ENV):
                tags["mlflow.parentRunId"] = os.environ[MLFLOW_PARENT_ENV]
            run = self.client.create_run(experiment_id, run_name=settings.run_name or Path(output_dir).name, tags=tags)
            self.run_id = run.info.run_id
            params = list(flatten(config).items())
            from mlflow.entities import Param

            for start in range(0, len(params), 100):
                self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in params[start:start + 100]])
        ids["mlflow"] = {"run_id": self.run_id, "uri": self.uri}

    def log(self, record: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        step, now = int(record.get("step", 0)), int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value in numeric(record).items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, final_metrics: dict[str, Any], artifacts: list[Path]) -> None:
        for key, value in numeric(final_metrics).items():
            self.client.set_tag(self.run_id, f"final.{key}", f"{value:.6g}")
        for path in artifacts:
            self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status="FINISHED")

    def close(self) -> None:
        pass


class WandbTracker:
    """A W&B run (offline with WANDB_MODE=offline, files under output_dir/wandb); resumed by its id."""

    def __init__(self, output_dir: Path, settings: Any, config: dict[str, Any], ids: dict[str, Any]) -> None:
        import wandb

        known = (ids.get("wandb") or {}).get("id")
        self.run = wandb.init(project=settings.project, name=settings.run_name or Path(output_dir).name,
                              id=known, resume="allow", dir=str(output_dir), config=config,
                              group=os.environ.get(WANDB_GROUP_ENV), tags=[f"{k}:{v}" for k, v in settings.tags.items()]
                              or None, reinit="finish_previous")
        ids["wandb"] = {"id": self.run.id}

    def replay(self, records: list[dict[str, Any]]) -> None:
        """A resumed run logs what came before its checkpoint again: W&B keeps what it already had (steps only
        go forward) and gets what a killed process never sent (an offline run is written asynchronously)."""
        last = self.run.step or 0
        for record in records:
            if int(record.get("step", 0)) > last:
                self.log(record)

    def log(self, record: dict[str, Any]) -> None:
        values = numeric(record)
        if values:
            self.run.log(values, step=int(record.get("step", 0)))

    def finish(self, final_metrics: dict[str, Any], artifacts: list[Path]) -> None:
        import wandb

        self.run.summary.update({f"final/{k}": v for k, v in numeric(final_metrics).items()})
        images = {f"plots/{p.stem}": wandb.Image(str(p)) for p in artifacts if p.suffix == ".png"}
        if images:
            self.run.log(images, commit=True)

    def close(self) -> None:
        self.run.finish()


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

    def finish(self, final_metrics: dict[str, Any], artifacts: list[Path]) -> None:
        for tracker in self.trackers:
            try:
                tracker.finish(final_metrics, artifacts)
            except Exception as exc:
                log.warning("%s could not record the final metrics: %s", type(tracker).__name__, exc)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()
        self.trackers = []


def open_trackers(settings: Any, output_dir: Path, resume_step: int | None, config: dict[str, Any]) -> list[Tracker]:
    """The trackers `logging.report_to` names, each continuing its earlier run when this one resumes."""
    ids_path = Path(output_dir) / IDS_FILE
    ids: dict[str, Any] = json.loads(ids_path.read_text()) if resume_step is not None and ids_path.is_file() else {}
    trackers: list[Tracker] = []
    if "tensorboard" in settings.report_to:
        trackers.append(TensorBoardTracker(Path(output_dir) / "tensorboard", resume_step))
    if "mlflow" in settings.report_to:
        trackers.append(MLflowTracker(Path(output_dir), settings, config, ids))
    if "wandb" in settings.report_to:
        wandb_tracker = WandbTracker(Path(output_dir), settings, config, ids)
        if resume_step is not None:
            wandb_tracker.replay(MetricsLog(Path(output_dir) / "metrics.jsonl").read())
        trackers.append(wandb_tracker)
    if ids:
        atomic_write_json(ids_path, ids)
    return trackers


class PipelineGroup:
    """What groups a pipeline's stages in the trackers: an MLflow parent run (in the pipeline folder's store,
    unless MLFLOW_TRACKING_URI says otherwise) whose children the stage runs become, and a W&B group named
    after the pipeline. Set through the environment, so stages launched in other processes join too."""

    def __init__(self, root: Path, name: str, report_to: set[str], project: str) -> None:
        self.root, self.client, self.run_id = root, None, None
        if "wandb" in report_to:
            os.environ[WANDB_GROUP_ENV] = name
        if "mlflow" not in report_to:
            return
        from mlflow import MlflowClient

        os.environ.setdefault(MLFLOW_URI_ENV, f"sqlite:///{(root / 'mlflow.db').resolve()}")
        uri = mlflow_uri(root)
        self.client = MlflowClient(uri)
        ids_path = root / IDS_FILE
        ids = json.loads(ids_path.read_text()) if ids_path.is_file() else {}
        known = ids.get("mlflow_parent") or {}
        if known.get("run_id") and known.get("uri") == uri:
            self.run_id = known["run_id"]
        else:
            experiment_id = mlflow_experiment(self.client, uri, project)
            self.run_id = self.client.create_run(experiment_id, run_name=name,
                                                 tags={"llmforge.pipeline": str(root.resolve())}).info.run_id
            ids["mlflow_parent"] = {"run_id": self.run_id, "uri": uri}
            atomic_write_json(ids_path, ids)
        os.environ[MLFLOW_PARENT_ENV] = self.run_id

    def report(self, files: list[Path]) -> None:
        if self.client is not None:
            for path in files:
                self.client.log_artifact(self.run_id, str(path), artifact_path="report" if path.suffix != ".png"
                                         else "report/plots")

    def close(self, finished: bool) -> None:
        if self.client is not None:
            self.client.set_terminated(self.run_id, status="FINISHED" if finished else "FAILED")
        for key in (MLFLOW_PARENT_ENV, WANDB_GROUP_ENV):
            os.environ.pop(key, None)
