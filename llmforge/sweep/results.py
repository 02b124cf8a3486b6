"""What a sweep leaves: the trials table (also `llmforge sweep --status`), best.yaml (the best trial's whole
resolved recipe), and a report with Optuna's plots (history, importances, parallel coordinates, the
intermediate values the pruner saw)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import optuna

from llmforge.sweep.spec import SweepSpec, override, seed_dir
from llmforge.sweep.study import pruner_sign

log = logging.getLogger("llmforge")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def table(study: optuna.Study, spec: SweepSpec) -> str:
    keys = list(spec.space)
    names = [o.metric for o in spec.objectives]
    lines = ["| trial | state | " + " | ".join(names + keys) + " | seconds | note |",
             "|" + "---|" * (len(names) + len(keys) + 4)]
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("surplus"):
            continue
        values = t.values or [None] * len(names)
        note = t.user_attrs.get("error") or (f"retry of trial {t.user_attrs['retry_of']}" if "retry_of" in
                                              t.user_attrs else "the base recipe's values" if t.user_attrs.get(
                                                  "base") else "")
        if t.state == optuna.trial.TrialState.PRUNED and t.last_step is not None:
            # Optuna keeps the last intermediate value as a pruned trial's value: the pruner's metric (maybe
            # negated), not the objective, so it is shown in the note as the run logged it
            values = [None] * len(names)
            seen = t.intermediate_values.get(t.last_step)
            note = f"pruned at {t.user_attrs.get('pruned_at') or f'step {t.last_step}'}" + (
                f" ({spec.pruner.metric} {_cell(pruner_sign(spec) * seen)})" if seen is not None else "")
        if t.user_attrs.get("seed_values"):  # the objective is their mean: each seed's values beside it
            note = "; ".join(filter(None, [note, "seeds " + ", ".join(
                f"{seed}: " + "/".join(_cell(v) for v in got) for seed, got in t.user_attrs["seed_values"].items())]))
        lines.append(f"| {t.number} | {t.state.name.lower()} | " + " | ".join(
            [_cell(v) for v in values] + [_cell(t.params.get(k)) for k in keys])
            + f" | {_cell(t.user_attrs.get('seconds'))} | {note.replace('|', '/')} |")
    return "\n".join(lines)


def best_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not done:
        return []
    return study.best_trials if len(study.directions) > 1 else [study.best_trial]


def write_results(study: optuna.Study, spec: SweepSpec, base: Path, pipeline: bool, folder: Path) -> list[str]:
    """best.yaml, trials.md, report.md and plots/; the lines to print."""
    from llmforge.config import dump, load_config

    text = table(study, spec)
    (folder / "trials.md").write_text(text + "\n")
    best = best_trials(study)
    printed = [text, ""]
    if best:
        top = best[0]
        overrides = [*spec.overrides, *(override(k, v) for k, v in top.params.items())]
        first = spec.seeds[0] if spec.seeds else None  # the recipe as its first seed ran it
        run_dir = seed_dir(Path(top.user_attrs.get("run_dir", folder)), first)
        if first is not None:
            overrides.append(override("seed", first))
        if pipeline:
            body = f"# llmforge pipeline {base} " + " ".join(f"'{o}'" for o in overrides) + "\n"
        else:
            body = dump(load_config(base, [*overrides, f"output_dir={run_dir}"]))
        if spec.seeds:
            body = (f"# trial {top.number}: the objective is the mean over seeds {spec.seeds}; this is the run of "
                    f"seed {spec.seeds[0]}\n") + body
        (folder / "best.yaml").write_text(body)
        shown = ", ".join(f"{o.metric} {v:.4g}" for o, v in zip(spec.objectives, top.values, strict=True))
        printed.append(f"best: trial {top.number} ({shown}): " + " ".join(overrides) + f" -> {folder / 'best.yaml'}")
        if len(best) > 1:
            printed.append("Pareto front: trials " + ", ".join(str(t.number) for t in best))
    plots = _plots(study, folder / "plots", spec)
    report = ["# Sweep " + spec.study_name, "", f"Base: `{base}`; objective: "
              + ", ".join(f"{o.direction} {o.metric}" for o in spec.objectives) + f"; sampler {spec.sampler.type}, "
              f"pruner {spec.pruner.type}.", "", text, ""]
    report += [f"![{p.stem}](plots/{p.name})" for p in plots]
    (folder / "report.md").write_text("\n".join(report) + "\n")
    return printed


def _plots(study: optuna.Study, folder: Path, spec: SweepSpec) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as views

    folder.mkdir(parents=True, exist_ok=True)
    single = len(spec.objectives) == 1
    wanted = {"history": views.plot_optimization_history, "importances": views.plot_param_importances,
              "parallel-coordinates": views.plot_parallel_coordinate}
    if spec.pruner.type != "none":
        wanted["intermediate-values"] = views.plot_intermediate_values
    written = []
    for name, draw in wanted.items():
        if not single and name != "intermediate-values":
            continue
        try:
            axes = draw(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # too few trials for that view yet
            log.info("sweep: no %s plot yet (%s)", name, exc)
            continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.set_size_inches(7, 4)
        figure.tight_layout()
        figure.savefig(folder / f"{name}.png", dpi=90)
        plt.close(figure)
        written.append(folder / f"{name}.png")
    return written
