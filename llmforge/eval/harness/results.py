"""lm-eval's result dictionaries as llmforge keeps them: per task, per metric, a value and its stderr.

lm-eval names a figure `metric,filter` (`exact_match,first-integer`) and its error `metric_stderr,filter`;
llmforge keeps `metric` when the filter is lm-eval's default ("none") and `metric/filter` otherwise, so
tasks with two filters (GSM8K's strict and flexible matches) keep both. The first metric a task reports is
its headline, the one the retention table compares.
"""

from __future__ import annotations

import math
from typing import Any

SKIPPED_KEYS = ("name", "alias", "sample_len", "samples")
EXAMPLES = 5


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def metrics_of(figures: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """{metric: {"value", "stderr"}} from one task's (or group's) entry of lm-eval's `results`."""
    metrics: dict[str, dict[str, float | None]] = {}
    for key, value in figures.items():
        if key in SKIPPED_KEYS or "," not in key:
            continue
        metric, _, filter_name = key.partition(",")
        stderr = metric.endswith("_stderr")
        metric = metric.removesuffix("_stderr")
        name = metric if filter_name == "none" else f"{metric}/{filter_name}"
        entry = metrics.setdefault(name, {"value": None, "stderr": None})
        entry["stderr" if stderr else "value"] = _number(value)
    return {name: entry for name, entry in metrics.items() if entry["value"] is not None}


def examples_of(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A few scored rows: what the model was asked, what it answered, what was expected."""
    shown = []
    for sample in samples[:EXAMPLES]:
        arguments = sample.get("arguments") or [[""]]
        first = arguments[0] if isinstance(arguments, (list, tuple)) else arguments
        prompt = first[0] if isinstance(first, (list, tuple)) else first
        if isinstance(prompt, dict):  # lm-eval's serialised form of the argument tuple
            prompt = prompt.get("arg_0", "")
        response = sample.get("filtered_resps") or sample.get("resps")
        shown.append({"prompt": str(prompt)[-300:], "response": str(response)[:300],
                      "target": str(sample.get("target"))[:300]})
    return shown


def task_result(name: str, output: dict[str, Any]) -> dict[str, Any]:
    """One task's figures from a simple_evaluate output: its metrics, subtasks (for groups), rows scored,
    its n-shot setting and a few examples."""
    results = output.get("results", {})
    groups = output.get("groups", {})
    figures = groups.get(name) or results.get(name, {})
    members = output.get("group_subtasks", {}).get(name, [])
    subtasks = {task: metrics_of(results[task]) for task in members if task in results}
    samples = (output.get("samples") or {}).get(name, [])
    counts = output.get("n-samples", {}).get(name, {})
    metrics = metrics_of(figures)
    better = output.get("higher_is_better", {}).get(name, {})
    return {"task": name, "metrics": metrics,
            "higher_is_better": {m: bool(better.get(m.split("/")[0], True)) for m in metrics},
            "subtasks": subtasks,
            "samples": counts.get("effective", len(samples) or None),
            "num_fewshot": output.get("n-shot", {}).get(name),
            "examples": examples_of(samples)}


def headline(result: dict[str, Any]) -> tuple[str, float] | None:
    """The task's first metric and its value."""
    for metric, entry in result.get("metrics", {}).items():
        return metric, entry["value"]
    return None
