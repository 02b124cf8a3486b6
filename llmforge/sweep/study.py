"""Running a sweep on Optuna: each trial an ordinary `llmforge train` (or `pipeline`) run in its own folder
and process, watched while it trains (the pruner reads the metrics it logs), scored from its final metrics.

The study lives in Optuna's storage (SQLite in the sweep folder by default, a journal file, or any database
URL), so any number of `llmforge sweep` processes on any number of machines share it: trial numbers are
handed out by the storage, and the budget counts trials by number, so together they run `n_trials`.
A trial whose process died (the sweep was SIGKILLed, a node was lost) is failed and, with
`retry_interrupted`, run again in the same folder, where it resumes from its last checkpoint.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna

from llmforge.sweep.spec import SweepSpec, override, seed_dir

log = logging.getLogger("llmforge")
HOST = socket.gethostname()


class TrialFailed(Exception):
    """A trial's run ended with an error (its message is recorded on the trial)."""


def storage_of(spec: SweepSpec, folder: Path) -> Any:
    if spec.storage == "journal":
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(str(folder / "study.journal")))
    url = spec.storage or f"sqlite:///{(folder / 'study.db').resolve()}"
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith(
        "sqlite") else None, heartbeat_interval=30, grace_period=120,
        failed_trial_callback=lambda study, trial: retry(study, trial, spec))


def sampler_of(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    s = spec.sampler

    def make(seed: int | None) -> optuna.samplers.BaseSampler:
        if s.type == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if s.type == "grid":
            return optuna.samplers.GridSampler({k: p.values() for k, p in spec.space.items()}, seed=seed)
        if s.type == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=s.startup_trials)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=s.startup_trials,
                                          multivariate=True, constant_liar=True)

    if s.seed is None or s.type == "grid":  # the grid sampler assigns grid points by trial number itself
        return make(s.seed)
    return SeededPerTrial(make, s.seed)


class SeededPerTrial(optuna.samplers.BaseSampler):
    """A sampler rebuilt for every trial with `seed + trial number`. One seeded sampler per process would replay
    the same random draws in every process sharing the study, and in a sweep run again after a kill: two
    workers started together proposed the same values for their first trials. Seeded by trial number, each
    trial draws its own values, and a study run by one process is reproducible. What the samplers learn
    (TPE's history, CMA-ES's state) lives in the study, so nothing is lost by rebuilding them."""

    def __init__(self, make: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self._make, self._seed = make, seed
        self._inner = make(seed)

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self._inner = self._make(self._seed + trial.number)
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                        search_space: dict[str, Any]) -> dict[str, Any]:
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, param_name: str,
                           param_distribution: Any) -> Any:
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: optuna.trial.TrialState,
                    values: Sequence[float] | None) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


def pruner_of(spec: SweepSpec) -> optuna.pruners.BasePruner:
    p = spec.pruner
    if p.type == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.startup_trials, n_warmup_steps=p.warmup_steps)
    if p.type == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def open_study(spec: SweepSpec, folder: Path, create: bool = True) -> optuna.Study:
    folder.mkdir(parents=True, exist_ok=True)
    directions = [o.direction for o in spec.objectives]
    # processes starting together would race to create the database's tables: one at a time (on this machine;
    # elsewhere the database server orders them)
    with (folder / ".study.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        storage = storage_of(spec, folder)
        if not create:
            return optuna.load_study(study_name=spec.study_name, storage=storage)
        return optuna.create_study(study_name=spec.study_name, storage=storage, load_if_exists=True,
                                   directions=directions, sampler=sampler_of(spec), pruner=pruner_of(spec))


def retry(study: optuna.Study, trial: optuna.trial.FrozenTrial, spec: SweepSpec) -> None:
    """A trial whose process died: queue its parameters again, to run in its folder (resuming there)."""
    if spec.retry_interrupted and trial.user_attrs.get("run_dir"):
        log.info("sweep: trial %d was interrupted; it runs again in %s", trial.number, trial.user_attrs["run_dir"])
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number,
                                                      "run_dir": trial.user_attrs["run_dir"]})


def fail_orphans(study: optuna.Study, spec: SweepSpec) -> None:
    """Trials left RUNNING by a process on this machine that is gone (no need to wait for heartbeats)."""
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        pid, host = trial.user_attrs.get("pid"), trial.user_attrs.get("host")
        if host == HOST and pid and not _alive(pid):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            retry(study, trial, spec)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie or a reused pid: the sweep that owned the trial records its own pid
    try:
        return "llmforge" in Path(f"/proc/{pid}/cmdline").read_text() and \
            Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def budget_spent(study: optuna.Study, before: int) -> int:
    """Trials numbered below `before` that count against n_trials: started (not waiting in the queue), not
    surplus, not replaced by a retry."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    return sum(1 for t in trials if t.number < before and t.number not in retried
               and t.state != optuna.trial.TrialState.WAITING and not t.user_attrs.get("surplus"))


def command(base: Path, pipeline: bool, run_dir: Path, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "llmforge", "pipeline" if pipeline else "train", str(base),
            *overrides, f"output_dir={run_dir}"]


def objective_values(spec: SweepSpec, run_dir: Path, pipeline: bool) -> list[float]:
    values = []
    for objective in spec.objectives:
        if pipeline:
            stage, _, metric = objective.metric.partition(".")
            stages = {s["name"]: s for s in json.loads((run_dir / "pipeline.json").read_text())["stages"]}
            final = (stages.get(stage) or {}).get("final_metrics", {})
        else:
            metric = objective.metric
            final = json.loads((run_dir / "run.json").read_text()).get("final_metrics", {})
        value = final.get(metric)
        if not isinstance(value, (int, float)):
            raise TrialFailed(f"the run has no final metric '{objective.metric}' (it has: {', '.join(sorted(final))})")
        values.append(float(value))
    return values


def run_trial(trial: optuna.Trial, spec: SweepSpec, base: Path, pipeline: bool, folder: Path,
              n_trials: int | None) -> list[float] | float:
    if n_trials is not None and budget_spent(trial.study, trial.number) >= n_trials:
        trial.set_user_attr("surplus", True)  # another process took the last trial of the budget
        trial.study.stop()
        raise optuna.TrialPruned("budget reached")
    values = {}
    for key, p in spec.space.items():
        if p.type == "categorical":
            values[key] = trial.suggest_categorical(key, p.choices)
        elif p.type == "int":
            values[key] = trial.suggest_int(key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            values[key] = trial.suggest_float(key, p.low, p.high, step=p.step, log=p.log)
    run_dir = Path(trial.user_attrs.get("run_dir") or folder / f"trial-{trial.number:04d}")
    trial.set_user_attr("run_dir", str(run_dir))
    trial.set_user_attr("host", HOST)
    trial.set_user_attr("pid", os.getpid())
    overrides = [*spec.overrides, *(override(k, v) for k, v in values.items())]
    (folder / "logs").mkdir(exist_ok=True)
    started, offset, per_seed = time.time(), 0, {}
    try:
        for seed in spec.seeds or [None]:
            # one run per seed, in order; the pruner sees them as one curve (seed k's steps after seed k-1's)
            target = seed_dir(run_dir, seed)
            extra = [] if seed is None else [override("seed", seed)]
            log_file = folder / "logs" / f"{run_dir.name}{'' if seed is None else f'-seed-{seed}'}.log"
            result, offset = _run(trial, spec, pipeline, seed, command(base, pipeline, target, [*overrides, *extra]),
                                  target, log_file, offset)
            per_seed[str(seed)] = result
            if seed is not None:
                trial.set_user_attr("seed_values", per_seed)
    finally:
        trial.set_user_attr("seconds", round(time.time() - started, 1))
    mean = [sum(column) / len(column) for column in zip(*per_seed.values(), strict=True)]
    return mean if len(mean) > 1 else mean[0]


def _run(trial: optuna.Trial, spec: SweepSpec, pipeline: bool, seed: int | None, argv: list[str], run_dir: Path,
         log_file: Path, offset: int) -> tuple[list[float], int]:
    """One run of a trial, watched by the pruner: its objective values, and the step the next run's reports
    start at."""
    with log_file.open("a") as output:
        process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, PYTHONUNBUFFERED="1"))
        pruned = _watch(trial, process, run_dir, spec, offset)
    if pruned:
        trial.set_user_attr("pruned_at", f"step {pruned}" + ("" if seed is None else f" of seed {seed}"))
        raise optuna.TrialPruned(f"pruned at step {pruned}")
    if process.returncode != 0:
        text = log_file.read_text(errors="replace").strip().splitlines()
        message = next((line for line in reversed(text) if line.startswith(("error:", "Error"))), None) \
            or (text[-1] if text else f"exit code {process.returncode}")
        trial.set_user_attr("error", message[:500])
        raise TrialFailed(message)
    return objective_values(spec, run_dir, pipeline), offset + (final_step(run_dir) or _last_logged(run_dir))


def pruner_sign(spec: SweepSpec) -> float:
    """+1, or -1 when the pruner's metric improves the other way from the objective (eval_loss watched in a
    study that maximizes accuracy): Optuna compares intermediate values in the objective's direction, so the
    metric is reported negated."""
    direction = spec.pruner.direction
    return -1.0 if direction and direction != spec.objectives[0].direction else 1.0


def final_step(run_dir: Path) -> int | None:
    """The step a trial's run ends at (its train.max_steps), once the run has written its run.json."""
    from llmforge.registry.runs import read_run_info

    steps = ((read_run_info(run_dir).get("config") or {}).get("train") or {}).get("max_steps")
    return steps if isinstance(steps, int) and steps > 0 else None


def _last_logged(run_dir: Path) -> int:
    """The last step in a run's metrics.jsonl (for a run whose length is set in epochs), 0 without one."""
    from llmforge.engine.run_record import MetricsLog

    return max((int(row["step"]) for row in MetricsLog(run_dir / "metrics.jsonl").read() if "step" in row), default=0)


def _watch(trial: optuna.Trial, process: subprocess.Popen, run_dir: Path, spec: SweepSpec,
           offset: int = 0) -> int | None:
    """Wait for the run, reporting the pruner's metric as the run logs it (at `offset` + its step: a trial's
    later seeds continue its curve); the run's step it was pruned at, if so. Never at the run's final step: a
    run that got there costs nothing more to finish, and its objective counts."""
    metric, seen, sign, reported, last = spec.pruner.metric, 0, pruner_sign(spec), 0, None
    while process.poll() is None:
        time.sleep(0.5)
        if spec.pruner.type == "none" or not (run_dir / "metrics.jsonl").is_file():
            continue
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        for line in lines[seen:]:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break  # a line being written: read it next time
            seen += 1
            if isinstance(row.get(metric), (int, float)) and "step" in row:
                trial.report(sign * float(row[metric]), offset + int(row["step"]))
                reported += 1
                last = last or final_step(run_dir)
                if (last is None or int(row["step"]) < last) and trial.should_prune():
                    process.send_signal(signal.SIGTERM)  # the run checkpoints and stops (exit 75)
                    process.wait()
                    return int(row["step"])
    if spec.pruner.type != "none" and process.returncode == 0 and reported < 2:
        log.warning("The pruner saw %s %s time(s) in trial %d: it cannot stop a trial early on a metric the run "
                    "logs only at its end. Watch one it logs at every evaluation (eval.every_steps), such as "
                    "eval_loss with pruner.direction: minimize.", metric, reported, trial.number)
    return None
