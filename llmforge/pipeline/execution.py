"""Run a pipeline's stages in order: skip the current ones, resume the interrupted one, redo the stale ones.

A completed stage is current when its config is unchanged and every run it started from
still has the fingerprint it had then. A stale stage's old output is set aside (one
generation kept, as OUTPUT.superseded) and the stage runs again; the stages after it
then see a new parent fingerprint and run again too. Each stage's resolved recipe is
written to output_dir/recipes/NAME.yaml, which is also what a multi-process stage is
launched with. After each stage the pipeline evaluates it (pipeline/evaluation.py), measures its
lm-eval tasks and safety probe when the recipe asks (pipeline/retention.py, the base model first), and
rewrites output_dir/report.md and report.html, so the report always covers what is done.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from llmforge.config import dump
from llmforge.config.stages import spec_for
from llmforge.engine import capabilities
from llmforge.engine.files import atomic_write_json, atomic_write_text, remove_dir
from llmforge.engine.run_record import changes_since
from llmforge.engine.stopped import EXIT_INTERRUPTED, EXIT_PREEMPTED, Stopped
from llmforge.engine.tracking import PipelineGroup
from llmforge.errors import UserError
from llmforge.pipeline import retention
from llmforge.pipeline.evaluation import evaluate_cached
from llmforge.pipeline.gates import check, figure
from llmforge.pipeline.plan import describe_plan
from llmforge.pipeline.spec import Pipeline, PipelineStage
from llmforge.registry.folders import referenced_run
from llmforge.registry.runs import read_run_info
from llmforge.report.document import plot_stage, write_report

log = logging.getLogger("llmforge")
STATE_FILE = "pipeline.json"


def staleness(stage: PipelineStage) -> str | None:
    """Why a stage's existing output must be set aside and the stage run from scratch: a completed run whose
    config or parents changed, or an interrupted one started with another config (resuming it would finish
    the old recipe's run under the new one's name). None when it is current, resumable or was never run."""
    info = read_run_info(Path(stage.config.output_dir))
    if not info.get("config"):
        return None
    changed = changes_since(info["config"], stage.config.model_dump(mode="json"))
    if changed:
        what = "its config changed" if info.get("status") == "completed" else "it was interrupted under another config"
        return what + " (" + "; ".join(changed[:3]) + ")"
    if info.get("status") != "completed":
        return None
    for parent in info.get("parents", []):
        folder = referenced_run(parent, Path(stage.config.output_dir))
        if folder is not None:
            now = read_run_info(folder).get("final_fingerprint")
            if now != parent.get("fingerprint"):
                return f"its {parent.get('role', 'model')} {folder} changed since it ran"
    return None


def _set_aside(folder: Path) -> Path:
    aside = folder.with_name(folder.name + ".superseded")
    if aside.exists():
        remove_dir(aside)
    folder.rename(aside)
    return aside


def _run_one(stage: PipelineStage, recipe: Path) -> None:
    from llmforge.distributed import launcher
    from llmforge.engine.runner import run_stage

    if launcher.needs_launch(stage.config):
        code = launcher.launch(stage.config, str(recipe), [])
        if code in (EXIT_PREEMPTED, EXIT_INTERRUPTED):
            raise Stopped("SIGINT" if code == EXIT_INTERRUPTED else "SIGTERM", -1,
                          f"stage '{stage.name}''s newest checkpoint")
        if code:
            raise UserError(f"stage '{stage.name}' exited with code {code}; its log is above. Run the pipeline "
                            "again to resume it from its last checkpoint.")
    else:
        run_stage(stage.config, spec_for(stage.config.stage))


def parent_of(stage: PipelineStage, earlier: list[PipelineStage]) -> PipelineStage | None:
    """The earlier stage whose output this stage's model starts from."""
    return next((s for s in reversed(earlier) if s.config.output_dir == stage.config.model.name), None)


def judge_for(stage: PipelineStage, earlier: list[PipelineStage], named: str | None) -> Path | None:
    """The reward model that judges a stage: the pipeline's `evaluation.judge` once it has run, else the one
    the stage trained against, else the latest rm stage before it."""
    chosen = next((s for s in earlier if s.name == named), None)
    if chosen:
        return Path(chosen.config.output_dir)
    spec = spec_for(stage.config.stage)
    own = spec.reward_model(stage.config) if spec.reward_model else None
    if own:
        return Path(own)
    latest = next((s for s in reversed(earlier) if spec_for(s.config.stage).judges), None)
    return Path(latest.config.output_dir) if latest else None


def _current(stage: PipelineStage) -> bool:
    """Completed and still current: the pipeline skips it."""
    return read_run_info(Path(stage.config.output_dir)).get("status") == "completed" and staleness(stage) is None


def plan(pipeline: Pipeline) -> list[str]:
    """The stage plan with time estimates (pipeline/plan.py), stages that are current marked done."""
    done = [_current(s) for s in pipeline.stages]
    return describe_plan([(s.name, s.config, d) for s, d in zip(pipeline.stages, done, strict=True)])


def refuse_unless_all_fit(pipeline: Pipeline, force: bool = False) -> None:
    """A stage predicted to need more memory than the device has stops the pipeline before its first stage, with
    the stage's largest terms and changes that fit (as `llmforge train` does for one stage)."""
    if force:
        return
    from llmforge.memory import stage_plans
    from llmforge.memory.advice import changes_that_fit
    from llmforge.memory.render import refusal

    for stage, planned in zip(pipeline.stages, stage_plans([s.config for s in pipeline.stages]), strict=True):
        if planned is not None and not planned.fits and not _current(stage):
            changes = changes_that_fit(stage.config, planned.budget, planned.estimate.device)
            raise UserError(f"stage '{stage.name}': " + refusal(stage.config, planned, changes).replace(
                " Changes that fit: ", f" Changes that fit (as {stage.name}.KEY=VALUE): "))


def _failed_gate(pipeline: Pipeline, name: str, evaluations: dict[str, dict[str, Any]],
                 summary: list[dict[str, Any]]) -> list[str]:
    """The `require:` conditions stage `name` fails, read from what the pipeline measured of each stage."""
    if name not in pipeline.gates:
        return []
    finals = {row["name"]: row.get("final_metrics", {}) for row in summary}

    def figures(stage: str, metric: str) -> float | None:
        return figure(evaluations.get(stage, {}), finals.get(stage, {}), metric)

    return check(name, pipeline.gates[name], figures)


def failed_stages(summary: list[dict[str, Any]]) -> list[str]:
    """Stages that failed their gate or were not run because they start from one, with why."""
    return [f"{row['name']}: {row['gate']}" for row in summary if row.get("gate")]


def run_pipeline(pipeline: Pipeline, force: bool = False) -> list[dict[str, Any]]:
    for stage in pipeline.stages:  # a stage this machine cannot run fails now, not after the ones before it
        try:
            capabilities.check(stage.config)
        except UserError as exc:
            raise UserError(f"stage '{stage.name}': {exc}") from None
    refuse_unless_all_fit(pipeline, force)
    retention.check_tasks(pipeline.evaluation)
    root = pipeline.output_dir
    (root / "recipes").mkdir(parents=True, exist_ok=True)
    trackers = {name for stage in pipeline.stages for name in stage.config.logging.report_to}
    group = PipelineGroup(root, root.name, trackers, pipeline.stages[0].config.logging.project)
    finished = False
    try:
        summary = _run_stages(pipeline, root, group)
        finished = True
    finally:
        group.close(finished)
    return summary


def _run_and_evaluate(pipeline: Pipeline, index: int, root: Path, summary: list[dict[str, Any]],
                      evaluations: dict[str, dict[str, Any]], held_back: dict[str, str]) -> None:
    """Run (or skip, when current) one stage, evaluate it for the report and check its `require` gate."""
    stage = pipeline.stages[index]
    output = Path(stage.config.output_dir)
    reason = staleness(stage)
    if reason:
        log.info("Stage '%s' runs again: %s; the old output is kept as %s.", stage.name, reason, _set_aside(output))
    if read_run_info(output).get("status") == "completed":
        log.info("Stage '%s' is up to date (%s).", stage.name, output)
        status, seconds = "skipped", 0.0
    else:
        log.info("Stage '%s' (%s) -> %s", stage.name, stage.config.stage, output)
        started = time.time()
        _run_one(stage, root / "recipes" / f"{stage.name}.yaml")
        status, seconds = "completed", round(time.time() - started, 2)
    summary.append({"name": stage.name, "stage": stage.config.stage, "output_dir": str(output), "status": status,
                    "seconds": seconds, "needs": stage.needs,
                    "final_metrics": read_run_info(output).get("final_metrics", {})})
    earlier = pipeline.stages[:index]
    evaluations[stage.name] = evaluate_cached(stage, parent_of(stage, earlier),
                                              judge_for(stage, earlier, pipeline.evaluation.judge),
                                              pipeline.evaluation, root / "evals")
    if failed := _failed_gate(pipeline, stage.name, evaluations, summary):
        log.warning("Stage '%s' failed its gate: %s. Its model is not handed on.", stage.name, "; ".join(failed))
        summary[-1].update({"status": "failed", "gate": "failed require: " + "; ".join(failed)})
        held_back[stage.name] = "failed its require gate"


def _run_stages(pipeline: Pipeline, root: Path, group: PipelineGroup) -> list[dict[str, Any]]:
    summary: list[dict[str, Any]] = []
    evaluations: dict[str, dict[str, Any]] = {}
    plots: dict[str, list[Path]] = {}
    measured: list[retention.Measured] = []
    benchmarks = retention.wanted(pipeline.evaluation)
    base = retention.base_model(pipeline) if benchmarks else None
    if base is not None:
        measured.append(retention.measure(retention.BASE, base, None, retention.base_folder(base, root),
                                          pipeline.evaluation))
    held_back: dict[str, str] = {}  # stage -> why its model is not handed on (failed its gate, or started from one)
    for index, stage in enumerate(pipeline.stages):
        output = Path(stage.config.output_dir)
        recipe = root / "recipes" / f"{stage.name}.yaml"
        atomic_write_text(recipe, dump(stage.config))
        if blocked_by := [name for name in stage.needs if name in held_back]:
            log.warning("Stage '%s' is not run: it starts from '%s', which %s.", stage.name, blocked_by[0],
                        held_back[blocked_by[0]])
            held_back[stage.name] = f"was not run (it starts from '{blocked_by[0]}')"
            summary.append({"name": stage.name, "stage": stage.config.stage, "output_dir": str(output),
                            "status": "blocked", "seconds": 0.0, "needs": stage.needs, "final_metrics": {},
                            "gate": f"not run: it starts from '{blocked_by[0]}', which {held_back[blocked_by[0]]}"})
        else:
            _run_and_evaluate(pipeline, index, root, summary, evaluations, held_back)
            if benchmarks and retention.is_language_model(stage):
                parent = parent_of(stage, pipeline.stages[:index])
                measured.append(retention.measure(stage.name, str(output), parent.name if parent else (
                    retention.BASE if base else None), output / "evals", pipeline.evaluation))
            plots[stage.name] = plot_stage(root, stage.name, output)
        atomic_write_json(root / STATE_FILE, {"pipeline": str(pipeline.path), "stages": summary,
                                              "retention": [asdict(row) for row in measured]})
        report = write_report(root, f"Pipeline {pipeline.path.name}", summary, evaluations, plots,
                              retention.blocks(measured, pipeline.evaluation.retention_threshold))
    group.report([*report, *(path for paths in plots.values() for path in paths)])
    return summary
