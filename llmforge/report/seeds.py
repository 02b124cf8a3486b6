"""One pipeline over several seeds: each stage's held-out figure and each aligned stage's gain over its start,
per seed, with the mean and range, so a claim is read against the spread between seeds rather than from one
lucky run. `llmforge pipeline RECIPE --seeds 42,1,2,3` writes it as OUTPUT_DIR/seeds.md after running the
recipe once per seed into OUTPUT_DIR/seed-N (each an ordinary, resumable pipeline run with its own report).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmforge.engine.files import atomic_write_text
from llmforge.report.document import NOISE_SE, within_noise


def seed_folder(root: Path, seed: int) -> Path:
    return root / f"seed-{seed}"


def _stage_figures(run: Path) -> dict[str, dict[str, Any]]:
    """stage name -> {status, accuracy, gain, gain_se, start} read from a finished pipeline folder."""
    state = json.loads((run / "pipeline.json").read_text())
    found: dict[str, dict[str, Any]] = {}
    for row in state["stages"]:
        path = run / "evals" / f"{row['name']}.json"
        evaluation = json.loads(path.read_text()) if path.is_file() else {}
        against = evaluation.get("against") or {}
        headline = evaluation.get("headline", {})
        found[row["name"]] = {"kind": row["stage"], "status": row["status"], "accuracy": against.get("accuracy", headline.get(
            "eval_accuracy")), "gain": against.get("gain"), "gain_se": against.get("gain_se"),
            "start": against.get("stage")}
    return found


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    mean = sum(values) / len(values)
    return f"{mean:+.3f} ({min(values):+.3f} to {max(values):+.3f})" if len(values) > 1 else f"{mean:+.3f}"


def _cell(entry: dict[str, Any] | None, key: str) -> str:
    if not entry or entry.get(key) is None:
        return "-" if not entry or entry.get("status") != "blocked" else "not run"
    value = entry[key]
    if key == "gain":
        mark = " (noise)" if within_noise(value, entry.get("gain_se") or 0.0) else ""
        return f"{value:+.3f}{mark}" + (" ✗" if entry.get("status") == "failed" else "")
    return f"{value:.3f}"


def seeds_table(root: Path, seeds: list[int]) -> str:
    """The markdown summary of the seeds' runs under `root`."""
    runs = {seed: _stage_figures(seed_folder(root, seed)) for seed in seeds if
            (seed_folder(root, seed) / "pipeline.json").is_file()}
    names = list(dict.fromkeys(name for figures in runs.values() for name in figures))
    header = "| stage | figure | " + " | ".join(f"seed {s}" for s in runs) + " | mean (range) |"
    lines = [f"# {root.name} over seeds {', '.join(map(str, runs))}", "",
             "Held-out greedy exact match of each stage, and of each aligned stage its gain over its start on the "
             f"same prompts; (noise) marks a gain within {NOISE_SE:g} of its standard errors of zero, ✗ a stage "
             "that failed its `require` gate.", "", header, "|" + "---|" * (len(runs) + 3)]
    for name in names:
        entries = [runs[seed].get(name) for seed in runs]
        accuracies = [e["accuracy"] for e in entries if e and e.get("accuracy") is not None]
        if accuracies:
            spread = (f"{sum(accuracies) / len(accuracies):.3f} ({min(accuracies):.3f}-{max(accuracies):.3f})"
                      if len(accuracies) > 1 else f"{accuracies[0]:.3f}")
            kind = next(e["kind"] for e in entries if e)
            figure = "pair accuracy" if kind == "rm" else "exact match"
            lines.append(f"| {name} | {figure} | " + " | ".join(_cell(e, "accuracy") for e in entries)
                         + f" | {spread} |")
        gains = [e["gain"] for e in entries if e and e.get("gain") is not None]
        if gains:
            start = next(e["start"] for e in entries if e and e.get("start"))
            raised = sum(g > 0 for g in gains)
            lines.append(f"| | gain over {start} | " + " | ".join(_cell(e, "gain") for e in entries)
                         + f" | {_spread(gains)}, up in {raised} of {len(gains)} |")
    return "\n".join(lines) + "\n"


def write_seeds_table(root: Path, seeds: list[int]) -> Path:
    path = root / "seeds.md"
    atomic_write_text(path, seeds_table(root, seeds))
    return path
