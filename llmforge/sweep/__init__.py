"""`llmforge sweep`: hyperparameters chosen by measurement, every trial an ordinary resumable run."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from llmforge.errors import UserError

log = logging.getLogger("llmforge")


def run_sweep(path: str, status: bool = False) -> list[str]:
    import optuna

    from llmforge.sweep.results import table, write_results
    from llmforge.sweep.spec import base_values, load_sweep
    from llmforge.sweep.study import TrialFailed, budget_spent, fail_orphans, open_study, run_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    spec, base, pipeline = load_sweep(path)
    folder = Path(spec.output_dir)
    if status:
        if not folder.is_dir():
            raise UserError(f"{folder}: no sweep there yet (run `llmforge sweep {path}` first).")
        return [table(open_study(spec, folder, create=False), spec)]
    if spec.budget.n_trials is None and spec.budget.timeout is None and spec.sampler.type != "grid":
        raise UserError(f"{path}: set budget.n_trials or budget.timeout (or both).")
    study = open_study(spec, folder)
    fail_orphans(study, spec)
    if spec.start_from_base and not study.trials and (values := base_values(spec, base, pipeline)):
        study.enqueue_trial(values, user_attrs={"base": True}, skip_if_exists=True)
    n_trials = spec.budget.n_trials

    def enough(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if n_trials is not None and budget_spent(study, 1 << 30) >= n_trials:
            study.stop()

    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    if n_trials is None or waiting or budget_spent(study, 1 << 30) < n_trials:
        log.info("sweep: study '%s' in %s (%d trials so far)", spec.study_name, folder, len(study.trials))
        study.optimize(lambda trial: run_trial(trial, spec, base, pipeline, folder, n_trials),
                       timeout=spec.budget.timeout, catch=(TrialFailed,), callbacks=[enough])
    return write_results(study, spec, base, pipeline, folder)
