"""`llmforge pipeline`: up-front validation, skip on rerun, rerun after a change, SIGKILL and resume, lineage."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import (
    PIPELINE_PRETRAIN,
    PIPELINE_SFT,
    checkpoint_complete,
    cli_command,
    deep_update,
    final_weights,
    kill_when,
    run_cli,
)

PRETRAIN, SFT = PIPELINE_PRETRAIN, PIPELINE_SFT


def write_pipeline(folder: Path, stages: dict | None = None, name: str = "pipeline.yaml") -> Path:
    body = {"output_dir": str(folder / "out"), "defaults": {"seed": 3},
            "stages": stages or {"pretrain": PRETRAIN, "sft": SFT}}
    path = folder / name
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def stamps(root: Path) -> dict[str, int]:
    return {name: (root / name / "final").stat().st_mtime_ns for name in ("pretrain", "sft")}


def test_a_typo_in_a_later_stage_fails_before_anything_runs(tmp_path):
    bad = deep_update(SFT, {"train": {"lrr": 1e-3}})
    started = time.time()
    result = run_cli("pipeline", str(write_pipeline(tmp_path, {"pretrain": PRETRAIN, "sft": bad})))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "stage 'sft'" in result.stderr and "train.lrr" in result.stderr
    assert not (tmp_path / "out").exists() and time.time() - started < 30


def test_references_must_name_an_earlier_stage(tmp_path):
    typo = deep_update(SFT, {"model": {"name": "${pretrian.output}"}})
    result = run_cli("pipeline", str(write_pipeline(tmp_path, {"pretrain": PRETRAIN, "sft": typo})))
    assert result.returncode == 2 and "names no stage" in result.stderr and "pretrain" in result.stderr
    backwards = deep_update(PRETRAIN, {"model": {"name": "${sft.output}"}})
    result = run_cli("pipeline", str(write_pipeline(tmp_path, {"pretrain": backwards, "sft": SFT})))
    assert result.returncode == 2 and "runs later" in result.stderr


def test_rerun_skips_current_stages_and_redoes_a_changed_one_and_those_after_it(tmp_path):
    pipeline = write_pipeline(tmp_path)
    result = run_cli("pipeline", str(pipeline))
    assert result.returncode == 0, result.stderr[-3000:]
    root = tmp_path / "out"
    first = stamps(root)
    sft_run = json.loads((root / "sft" / "run.json").read_text())
    assert sft_run["parents"][0]["run_dir"] == str((root / "pretrain").resolve())
    assert (root / "recipes" / "sft.yaml").is_file()
    report = (root / "report.md").read_text()
    assert report.count("| pretrain | pretrain | completed |") == 1 and "| sft | sft | completed |" in report
    assert "eval_perplexity" in report  # pretrain's headline figure
    assert (root / "plots" / "pretrain-loss.png").stat().st_size > 5000
    assert "<img src='plots/sft-loss.png'" in (root / "report.html").read_text()
    assert json.loads((root / "evals" / "pretrain.json").read_text())["samples"]  # continuations of held-out text

    result = run_cli("pipeline", str(pipeline))
    assert result.returncode == 0 and stamps(root) == first
    assert [s["status"] for s in json.loads((root / "pipeline.json").read_text())["stages"]] == ["skipped"] * 2
    assert "| sft | sft | skipped |" in (root / "report.md").read_text()

    result = run_cli("pipeline", str(pipeline), "pretrain.train.lr=1e-3")  # a new pretrain -> a new sft
    assert result.returncode == 0, result.stderr[-3000:]
    again = stamps(root)
    assert again["pretrain"] != first["pretrain"] and again["sft"] != first["sft"]
    assert (root / "pretrain.superseded" / "final").is_dir() and (root / "sft.superseded").is_dir()

    result = run_cli("pipeline", str(pipeline), "pretrain.train.lr=1e-3", "sft.train.lr=1e-3")
    assert result.returncode == 0 and "Stage 'pretrain' is up to date" in result.stderr
    assert stamps(root)["pretrain"] == again["pretrain"] and stamps(root)["sft"] != again["sft"]


def test_sigkill_in_a_stage_then_rerun_resumes_it_and_matches_an_uninterrupted_pipeline(tmp_path):
    reference = tmp_path / "reference"
    killed = tmp_path / "killed"
    reference.mkdir()
    killed.mkdir()
    assert run_cli("pipeline", str(write_pipeline(reference))).returncode == 0
    pipeline = write_pipeline(killed)
    import subprocess

    process = subprocess.Popen(cli_command("pipeline", str(pipeline)), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    kill_when(process, checkpoint_complete(killed / "out" / "sft", 2))
    result = run_cli("pipeline", str(pipeline))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Stage 'pretrain' is up to date" in result.stderr and "Resuming from" in result.stderr
    a, b = final_weights(reference / "out" / "sft"), final_weights(killed / "out" / "sft")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)

    result = run_cli("lineage", str(killed / "out" / "sft"))
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert "[sft, completed" in lines[0] and "data.train" in lines[1]
    assert any(str((killed / "out" / "pretrain").resolve()) in line and "[pretrain" in line for line in lines)
    assert any("tiny-llama (preset)" in line for line in lines)


def test_an_interrupted_stage_rerun_with_another_config_starts_over_instead_of_resuming(tmp_path):
    """Resuming would finish the old recipe's run (its first steps, its schedule) under the new recipe's name."""
    import subprocess

    pipeline = write_pipeline(tmp_path)
    process = subprocess.Popen(cli_command("pipeline", str(pipeline)), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    kill_when(process, checkpoint_complete(tmp_path / "out" / "sft", 2))
    result = run_cli("pipeline", str(pipeline), "sft.train.lr=1e-3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "interrupted under another config" in result.stderr and "Resuming from" not in result.stderr
    run = json.loads((tmp_path / "out" / "sft" / "run.json").read_text())
    assert run["resumed_from"] == [] and run["config"]["train"]["lr"] == 1e-3
    assert (tmp_path / "out" / "sft.superseded").is_dir()


def test_the_evaluation_section_is_validated_up_front(tmp_path):
    import pytest

    from llmforge.errors import UserError
    from llmforge.pipeline.spec import load_pipeline

    def pipeline_with(evaluation: dict) -> Path:
        path = write_pipeline(tmp_path)
        body = yaml.safe_load(path.read_text())
        path.write_text(yaml.safe_dump({**body, "evaluation": evaluation}, sort_keys=False))
        return path

    with pytest.raises(UserError, match="evaluation.judge 'sft' must name a reward-model"):
        load_pipeline(pipeline_with({"judge": "sft"}))
    with pytest.raises(UserError, match="evaluation.max_prompt"):
        load_pipeline(pipeline_with({"max_prompt": 10}))
    loaded = load_pipeline(pipeline_with({"prompts": [{"name": "arithmetic-prompts", "split": "test"}],
                                          "max_new_tokens": 8}))
    assert loaded.evaluation.prompts[0].name == "arithmetic-prompts" and loaded.evaluation.max_new_tokens == 8


def test_overrides_name_a_stage_every_stage_or_the_pipeline(tmp_path):
    from llmforge.errors import UserError
    from llmforge.pipeline.spec import load_pipeline

    path = write_pipeline(tmp_path)
    pipeline = load_pipeline(path, ["seed=1", f"output_dir={tmp_path / 'seed-1'}", "sft.train.lr=1e-4",
                                    "evaluation.max_prompts=5"])
    assert [s.config.seed for s in pipeline.stages] == [1, 1]  # a stage's own seed too: an override wins
    assert pipeline.output_dir == tmp_path / "seed-1"
    assert [s.config.output_dir for s in pipeline.stages] == [str(tmp_path / "seed-1" / n) for n in ("pretrain", "sft")]
    assert pipeline.stages[1].config.train.lr == 1e-4 and pipeline.stages[0].config.train.lr != 1e-4
    assert pipeline.evaluation.max_prompts == 5
    assert [s.config.train.max_steps for s in load_pipeline(path, ["train.max_steps=9"]).stages] == [9, 9]
    with pytest.raises(UserError, match="no stage 'sfft'. Did you mean 'sft'"):
        load_pipeline(path, ["sfft.train.lr=1e-4"])
    with pytest.raises(UserError, match="unknown key 'trian'"):
        load_pipeline(path, ["trian.lr=1e-4"])
