"""`llmforge sweep` on a few-second recipe: a bad search key stops before any trial, two processes share one
study without running a trial twice, a SIGKILLed sweep resumes (the interrupted trial from its checkpoint),
and a diverging trial is recorded failed while the study goes on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import optuna
import pytest
import yaml

from llmforge.sweep.spec import base_values, load_sweep
from tests.helpers import ROOT, checkpoint_complete, cli_command, kill_when, run_cli, write_recipe

QUICK = {"stage": "pretrain", "seed": 3, "model": {"name": "tiny-llama"},
         "data": {"train": [{"name": "tinytext", "options": {"num_documents": 200}}],
                  "eval": [{"name": "tinytext", "split": "test", "options": {"num_documents": 20}}],
                  "max_length": 32},
         "train": {"max_steps": 4, "micro_batch_size": 4, "lr": 3.0e-3},
         "eval": {"every_steps": 2}, "checkpoint": {"every_steps": 2, "keep_last": 3},
         "logging": {"every_steps": 2}}


def sweep_file(folder: Path, name: str = "sweep.yaml", **changes) -> Path:
    base = write_recipe(folder, "base.yaml", base=QUICK, output_dir="runs/unused")
    spec = {"base": str(base), "output_dir": str(folder / "sweep"),
            "space": {"train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
                      "train.warmup_ratio": {"type": "float", "low": 0.0, "high": 0.3}},
            "objective": {"metric": "eval_loss", "direction": "minimize"},
            "budget": {"n_trials": 3}, "sampler": {"type": "random", "seed": 0}, **changes}
    path = folder / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def study_of(folder: Path) -> optuna.Study:
    return optuna.load_study(study_name="llmforge", storage=f"sqlite:///{folder / 'sweep' / 'study.db'}")


def counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if not t.user_attrs.get("surplus")]


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_sweep_checks_against_its_base_and_starts_from_the_shipped_values(path):
    spec, base, pipeline = load_sweep(path)  # every search key resolved against the base recipe
    assert base_values(spec, base, pipeline) is not None  # trial 0 runs the recipe as shipped


def test_a_bad_search_key_exits_2_before_any_trial(tmp_path):
    path = sweep_file(tmp_path, space={"train.lrr": {"type": "float", "low": 1e-3, "high": 1e-2}})
    result = run_cli("sweep", str(path))
    assert result.returncode == 2 and "space.train.lrr" in result.stderr and "Did you mean 'lr'" in result.stderr
    assert not (tmp_path / "sweep").exists()
    bad = sweep_file(tmp_path, "bad.yaml", space={"train.lr": {"type": "float", "low": 1.0, "high": 0.1}})
    result = run_cli("sweep", str(bad))
    assert result.returncode == 2 and "low` <= `high" in result.stderr and "Traceback" not in result.stderr


def test_two_processes_share_one_study(tmp_path):
    path = sweep_file(tmp_path, budget={"n_trials": 4})
    workers = [subprocess.Popen(cli_command("sweep", str(path)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs[0][1][-2000:] + outputs[1][1][-2000:]
    trials = counted(study_of(tmp_path))
    assert len(trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    folders = [t.user_attrs["run_dir"] for t in trials]
    assert len(set(folders)) == 4 and len({t.user_attrs["pid"] for t in trials}) == 2  # both worked
    # each process seeds its sampler per trial: two started together do not propose the same values
    assert len({(t.params["train.lr"], t.params["train.warmup_ratio"]) for t in trials}) == 4
    for folder in folders:  # each trial trained once: one run, never resumed
        info = json.loads((Path(folder) / "run.json").read_text())
        assert info["status"] == "completed" and not info.get("resumed_from")
    status = run_cli("sweep", str(path), "--status")
    assert status.returncode == 0 and status.stdout.count("| complete |") == 4
    best = yaml.safe_load((tmp_path / "sweep" / "best.yaml").read_text())
    assert best["stage"] == "pretrain" and best["train"]["lr"] == min(trials, key=lambda t: t.value).params["train.lr"]
    assert trials[0].user_attrs.get("base") and trials[0].params["train.lr"] == 3.0e-3  # the base's own values first
    assert (tmp_path / "sweep" / "plots" / "history.png").is_file()


def test_sigkill_then_rerun_keeps_finished_trials_and_resumes_the_interrupted_one(tmp_path):
    path = sweep_file(tmp_path, budget={"n_trials": 2})
    process = subprocess.Popen(cli_command("sweep", str(path)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    trial = tmp_path / "sweep" / "trial-0001"
    kill_when(process, checkpoint_complete(trial, 2), timeout=300)
    os.killpg(process.pid, signal.SIGKILL)  # the sweep and the trial it runs, as when a node goes away
    first = json.loads((tmp_path / "sweep" / "trial-0000" / "run.json").read_text())
    assert first["status"] == "completed"
    again = run_cli("sweep", str(path), timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    trials = {t.number: t for t in study_of(tmp_path).trials}
    assert trials[1].state == optuna.trial.TrialState.FAIL
    retries = [t for t in trials.values() if t.user_attrs.get("retry_of") == 1]
    assert len(retries) == 1 and retries[0].state == optuna.trial.TrialState.COMPLETE
    assert retries[0].params == trials[1].params and retries[0].user_attrs["run_dir"] == str(trial)
    assert json.loads((trial / "run.json").read_text())["resumed_from"]  # from its checkpoint, not from scratch
    assert json.loads((tmp_path / "sweep" / "trial-0000" / "run.json").read_text()) == first  # kept as it was
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in counted(study_of(tmp_path))) == 2


def test_a_trial_over_seeds_scores_their_mean_and_resumes_the_seed_it_was_killed_in(tmp_path):
    path = sweep_file(tmp_path, budget={"n_trials": 1}, seeds=[5, 6])
    process = subprocess.Popen(cli_command("sweep", str(path)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    trial = tmp_path / "sweep" / "trial-0000"
    kill_when(process, checkpoint_complete(trial / "seed-6", 2), timeout=300)
    os.killpg(process.pid, signal.SIGKILL)  # during the second seed's run
    first = json.loads((trial / "seed-5" / "run.json").read_text())
    assert first["status"] == "completed" and first["config"]["seed"] == 5
    again = run_cli("sweep", str(path), timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    done = [t for t in counted(study_of(tmp_path)) if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 1 and done[0].user_attrs["retry_of"] == 0
    assert json.loads((trial / "seed-5" / "run.json").read_text()) == first  # the finished seed is not run again
    second = json.loads((trial / "seed-6" / "run.json").read_text())
    assert second["config"]["seed"] == 6 and second["resumed_from"]  # from its checkpoint
    losses = [first["final_metrics"]["eval_loss"], second["final_metrics"]["eval_loss"]]
    assert losses[0] != losses[1] and done[0].value == sum(losses) / 2
    assert done[0].user_attrs["seed_values"] == {"5": [losses[0]], "6": [losses[1]]}
    assert "seeds 5: " in again.stdout
    best = (tmp_path / "sweep" / "best.yaml").read_text()
    assert best.startswith("# trial 1: the objective is the mean over seeds [5, 6]")
    assert yaml.safe_load(best)["seed"] == 5
    same = sweep_file(tmp_path, "twice.yaml", seeds=[5, 5])
    result = run_cli("sweep", str(same))
    assert result.returncode == 2 and "lists a seed twice" in result.stderr and "Traceback" not in result.stderr


def test_a_diverging_trial_is_recorded_failed_and_the_study_goes_on(tmp_path):
    path = sweep_file(tmp_path, space={"train.lr": {"type": "categorical", "choices": [3.0e-3, 1.0e+9]}},
                      sampler={"type": "grid", "seed": 0}, budget={"n_trials": 2}, start_from_base=False)
    result = run_cli("sweep", str(path), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = {t.params["train.lr"]: t for t in study_of(tmp_path).trials}
    assert trials[3.0e-3].state == optuna.trial.TrialState.COMPLETE
    failed = trials[1.0e+9]
    assert failed.state == optuna.trial.TrialState.FAIL and "training loss nan" in failed.user_attrs["error"]
    assert "| fail |" in result.stdout and "best: trial" in result.stdout


def test_a_pruner_watching_a_metric_that_improves_the_other_way_reports_it_negated():
    from llmforge.sweep.spec import SweepSpec
    from llmforge.sweep.study import pruner_sign

    def spec(direction, pruner_direction):
        return SweepSpec(base="b.yaml", output_dir="out", space={"train.lr": {"type": "float", "low": 1, "high": 2}},
                         objective={"metric": "eval_accuracy", "direction": direction},
                         pruner={"type": "median", "metric": "eval_loss", "direction": pruner_direction})

    # a study maximizing accuracy, pruned on eval_loss: lower loss must look better to Optuna's median
    assert pruner_sign(spec("maximize", "minimize")) == -1.0
    assert pruner_sign(spec("minimize", "minimize")) == 1.0
    assert pruner_sign(spec("maximize", None)) == 1.0  # the objective's own direction


def test_a_trial_is_pruned_before_its_final_step_never_at_it(tmp_path):
    """A pruner that always says prune: a run logging its metric at step 2 of 4 is stopped there; one whose
    first report is its final step finishes, so its objective counts."""
    import sys

    from llmforge.sweep.spec import SweepSpec
    from llmforge.sweep.study import _watch

    class AlwaysPrune:
        number = 0

        def report(self, value, step):
            self.last = (value, step)

        def should_prune(self):
            return True

    spec = SweepSpec(base="b.yaml", output_dir="out", space={"train.lr": {"type": "float", "low": 1, "high": 2}},
                     objective={"metric": "eval_loss", "direction": "minimize"},
                     pruner={"type": "median", "metric": "eval_loss"})
    for steps, pruned_at in (([2, 4], 2), ([4], None)):
        run = tmp_path / f"run-{len(steps)}"
        run.mkdir()
        (run / "run.json").write_text(json.dumps({"config": {"train": {"max_steps": 4}}}))
        (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "eval_loss": 1.0}) + "\n" for s in steps))
        process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
        assert _watch(AlwaysPrune(), process, run, spec) == pruned_at
        process.kill()
        process.wait()
