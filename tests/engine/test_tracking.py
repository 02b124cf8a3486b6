"""Experiment tracking with the real libraries: MLflow's local store read back through MlflowClient, W&B's
offline files read back as W&B wrote them; the same tracker run after a SIGKILL and resume; pipelines grouped."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.helpers import (
    TINY_PRETRAIN,
    checkpoint_complete,
    kill_when,
    read_wandb_offline,
    run_cli,
    start_run,
    write_recipe,
)

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("wandb")

TRACKED = {"logging": {"every_steps": 5, "report_to": ["mlflow", "wandb", "tensorboard"], "run_name": "tiny",
                       "project": "tests", "tags": {"purpose": "test"}},
           "train": {"max_steps": 20, "scheduler": "constant", "warmup_ratio": 0.0},
           "checkpoint": {"every_steps": 10}, "eval": {"every_steps": 10}}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def mlflow_run(run_dir):
    from mlflow import MlflowClient

    ids = json.loads((run_dir / "tracking.json").read_text())["mlflow"]
    client = MlflowClient(ids["uri"])
    return client, client.get_run(ids["run_id"])


def test_a_run_is_tracked_in_mlflow_and_wandb_and_resumes_the_same_runs(tmp_path):
    """Config once, every metric with its step, final metrics, plots as artifacts; a SIGKILLed run continues
    the same MLflow run and the same W&B run, and its metrics go on from the checkpoint."""
    recipe = write_recipe(tmp_path, **TRACKED)
    kill_when(start_run(recipe), checkpoint_complete(tmp_path / "run", 10))
    first_ids = json.loads((tmp_path / "run" / "tracking.json").read_text())
    result = run_cli("train", str(recipe))
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "tracking.json").read_text()) == first_ids

    client, run = mlflow_run(run_dir)
    assert run.info.status == "FINISHED" and run.info.run_name == "tiny" and run.data.tags["purpose"] == "test"
    assert run.data.params["train.max_steps"] == "20" and run.data.params["stage"] == "pretrain"
    losses = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "loss")}
    logged = {row["step"]: row["loss"] for row in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
              if "loss" in row and "train_loss" not in row}
    assert losses == logged and sorted(losses) == [5, 10, 15, 20]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "eval_perplexity")][-1] == 20
    final = json.loads((run_dir / "run.json").read_text())["final_metrics"]
    assert float(run.data.tags["final.eval_loss"]) == pytest.approx(final["eval_loss"], rel=1e-5)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"run.json", "loss.png"} <= artifacts
    assert next((run_dir / "mlflow-artifacts").rglob("loss.png"))  # in the run folder, not ./mlruns

    runs = read_wandb_offline(run_dir)
    # a SIGKILLed offline run may not have flushed its file at all; the resumed run has the same id
    assert {r["id"] for r in runs if "id" in r} == {first_ids["wandb"]["id"]}
    history = [row for r in runs for row in r["history"] if "loss" in row]
    assert {row["_step"] for row in history} == {5, 10, 15, 20}
    assert runs[-1]["config"]["train"]["max_steps"] == 20
    assert runs[-1]["summary"]["final/eval_loss"] == pytest.approx(final["eval_loss"], rel=1e-5)


def test_a_pipeline_groups_its_stages(tmp_path, monkeypatch):
    stage = {k: v for k, v in TINY_PRETRAIN.items()}
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "chain"),
        "defaults": {"logging": {"report_to": ["mlflow", "wandb"], "project": "chains"}},
        "stages": {"first": {**stage, "train": {"max_steps": 4}},
                   "second": {**stage, "model": {"name": "${first.output}"}, "train": {"max_steps": 4}}}},
        sort_keys=False))
    result = run_cli("pipeline", str(pipeline))
    assert result.returncode == 0, result.stderr[-3000:]
    chain = tmp_path / "chain"
    parent_id = json.loads((chain / "tracking.json").read_text())["mlflow_parent"]["run_id"]
    for name in ("first", "second"):
        client, run = mlflow_run(chain / name)
        assert run.data.tags["mlflow.parentRunId"] == parent_id
        assert read_wandb_offline(chain / name)[0]["group"] == "chain"
    assert {"report"} <= {a.path for a in client.list_artifacts(parent_id)}
    assert next((chain / "mlflow-artifacts").rglob("report.md"))
    assert client.get_run(parent_id).info.status == "FINISHED"


def test_wandb_without_a_login_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    result = run_cli("train", str(write_recipe(tmp_path, logging={"report_to": "wandb"})))
    assert result.returncode == 2 and "WANDB_MODE=offline" in result.stderr
