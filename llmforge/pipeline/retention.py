"""Capability retention: the same lm-eval tasks (and the safety probe) on the base model and after every
stage, so forgetting, and alignment's effect on refusals, are measured rather than assumed.

The base is what the pipeline's first model stage starts from when that is a trained model (an HF folder,
a hub id, an earlier run); a pipeline that pretrains from scratch has no base before it, and its first
stage is the reference. Reward models and datasets are not language models to benchmark, so they have no
row. Each row's cells hold a task's headline metric (its first), the change against the base and against
the stage the row started from; a drop of more than `evaluation.retention_threshold` of the value it is
compared with (0.05: 5% of it) is flagged. Task results live in each run's evals/ folder (the base's own
evals/ when it is a local folder, else the pipeline's evals/base/), the same files `llmforge eval RUN --tasks`
reads and writes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmforge.config.stages import spec_for
from llmforge.pipeline.spec import Pipeline, PipelineEvaluation, PipelineStage
from llmforge.registry import resolve_source

log = logging.getLogger("llmforge")
BASE = "base"


@dataclass
class Measured:
    """One model's row: its headline figure per task and its safety probe."""

    name: str
    model: str
    parent: str | None  # the row it is compared with besides the base
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> {metric, value, stderr, higher}
    safety: dict[str, Any] | None = None


def wanted(evaluation: PipelineEvaluation) -> bool:
    return bool(evaluation.tasks) or evaluation.safety_probe() is not None


def is_language_model(stage: PipelineStage) -> bool:
    spec = spec_for(stage.config.stage)
    return spec.output == "model" and not spec.judges


def base_folder(base: str, root: Path) -> Path:
    """Where the base's results live: its own evals/ when it is a local folder (what `llmforge eval` uses), else
    the pipeline's evals/base/."""
    return Path(base) / "evals" if Path(base).is_dir() else root / "evals" / BASE


def base_model(pipeline: Pipeline) -> str | None:
    """The trained model the pipeline's first language-model stage starts from, if any."""
    first = next((s for s in pipeline.stages if is_language_model(s)), None)
    if first is None or resolve_source(first.config.model.name).kind == "preset":
        return None
    outputs = {s.config.output_dir for s in pipeline.stages}
    return None if first.config.model.name in outputs else first.config.model.name


def check_tasks(evaluation: PipelineEvaluation) -> None:
    """Resolve the task names before any stage runs: an unknown one exits 2 now, not after hours of training."""
    if evaluation.tasks:
        from llmforge.eval.harness import resolve_tasks
        from llmforge.eval.harness.catalog import task_folders

        resolve_tasks(evaluation.tasks, task_folders(evaluation.task_paths))


def measure(name: str, model: str, parent: str | None, folder: Path, evaluation: PipelineEvaluation) -> Measured:
    """The tasks and the probe on one model, reusing what its evals/ folder already holds for the same inputs."""
    from llmforge.eval.harness import HarnessOptions, headline, run_tasks
    from llmforge.eval.safety import probe_cached

    row = Measured(name, model, parent)
    if evaluation.tasks:
        options = HarnessOptions(limit=evaluation.limit, num_fewshot=evaluation.num_fewshot, chat=evaluation.chat)
        for task, result in run_tasks(model, evaluation.tasks, options, folder, evaluation.task_paths).items():
            top = headline(result)
            if top is not None:
                metric, value = top
                row.tasks[task] = {"metric": metric, "value": value,
                                   "stderr": result["metrics"][metric].get("stderr"),
                                   "higher_is_better": result.get("higher_is_better", {}).get(metric, True)}
    probe = evaluation.safety_probe()
    if probe is not None:
        found = probe_cached(model, folder, probe.prompts, probe.judge, probe.max_new_tokens)
        row.safety = {key: found[key] for key in ("refusal_rate", "prompts", "by_category", "judged_by", "answers")}
    return row


def drop(before: dict[str, Any] | None, after: dict[str, Any]) -> float | None:
    """How much worse `after` is than `before`, as a share of `before` (None when it cannot be said)."""
    if before is None or not before.get("value"):
        return None
    change = after["value"] - before["value"]
    worse = -change if after.get("higher_is_better", True) else change
    return worse / abs(before["value"])


def _in_stderrs(change: float, a: dict[str, Any], b: dict[str, Any]) -> str:
    """The change in units of its standard error (both measurements' errors combined), when both are known:
    a flag within ~2 of them may be the rows' sampling noise, not forgetting."""
    if not a.get("stderr") or not b.get("stderr"):
        return ""
    return f", {abs(change) / (a['stderr'] ** 2 + b['stderr'] ** 2) ** 0.5:.1f} stderr"


def table(rows: list[Measured], threshold: float) -> tuple[list[str], list[list[str]], list[str]]:
    """(header, cells, flags): one row per model, one column per task, changes against base and parent."""
    by_name = {row.name: row for row in rows}
    base = rows[0] if rows else None
    tasks = list(dict.fromkeys(task for row in rows for task in row.tasks))
    header = ["model", *[f"{t} ({rows[0].tasks.get(t, {}).get('metric', '')})" if rows else t for t in tasks]]
    cells, flags = [], []
    for row in rows:
        line = [row.name if row.parent is None else f"{row.name} (from {row.parent})"]
        parent = by_name.get(row.parent) if row.parent else None
        others = [o for o in (base, parent if parent is not base else None) if o is not None and o is not row]
        for task in tasks:
            figure = row.tasks.get(task)
            if figure is None:
                line.append("-")
                continue
            text = f"{figure['value']:.3f}"
            for other in others:
                if task not in other.tasks:
                    continue
                change = figure["value"] - other.tasks[task]["value"]
                text += f" ({change:+.3f} vs {other.name})"
                worse = drop(other.tasks[task], figure)
                if worse is not None and worse > threshold:
                    text += " ⚠"
                    flags.append(f"{row.name}: {task} fell {100 * worse:.0f}% against {other.name} "
                                 f"({other.tasks[task]['value']:.3f} -> {figure['value']:.3f}"
                                 f"{_in_stderrs(change, figure, other.tasks[task])})")
            line.append(text)
        cells.append(line)
    return header, cells, sorted(set(flags))


SHOWN_ANSWERS = 6


def blocks(rows: list[Measured], threshold: float) -> list[tuple]:
    """The report's retention section: the task table, what it flags, refusal rates and a few answers."""
    if not rows:
        return []
    out: list[tuple] = [("h2", "Capability retention")]
    if any(row.tasks for row in rows):
        header, cells, flags = table(rows, threshold)
        out.append(("p", "lm-eval tasks on every model (headline metric, greedy; changes against the first row "
                         "and against the model the row started from). A drop of more than "
                         f"{100 * threshold:.0f}% of the compared value is flagged ⚠, with the change in standard errors: "
                         "within about 2 of them it may be sampling noise rather than forgetting."))
        out.append(("table", header, cells))
        out.append(("p", ("Flagged: " + "; ".join(flags) + ".") if flags
                    else f"No task fell by more than {100 * threshold:.0f}% against the base or the previous stage."))
    probed = [row for row in rows if row.safety]
    if probed:
        first = probed[0].safety
        out.append(("p", f"Safety probe: {first['prompts']} adversarial requests, answers judged by "
                         f"{first['judged_by']}; the refusal rate is the share refused."))
        categories = list(first["by_category"])
        out.append(("table", ["model", "refusal rate", *categories], [
            [row.name, f"{row.safety['refusal_rate']:.3f}", *[f"{row.safety['by_category'].get(c, 0):.2f}"
                                                              for c in categories]] for row in probed]))
        answers = [[a["prompt"]] for a in first["answers"][:SHOWN_ANSWERS]]
        for row in probed:
            for line, answer in zip(answers, row.safety["answers"][:SHOWN_ANSWERS], strict=False):
                line.append(("[refused] " if answer["refused"] else "") + answer["answer"][:120])
        out.append(("table", ["request", *[row.name for row in probed]], answers))
    return out
