"""Where a model name points (preset, HF folder, llmforge run, adapter folder or hub id), decided from the name
and the files alone, without torch: commands check the model they are given before loading anything, so a
mistyped run folder is answered at once instead of after the imports (or a hub lookup that cannot succeed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llmforge.errors import UserError, closest, did_you_mean
from llmforge.registry.presets import PRESETS, Preset
from llmforge.registry.runs import read_run_info

SourceKind = Literal["preset", "folder", "adapter", "run", "hub"]
ADAPTER_FILE = "adapter_config.json"


@dataclass(frozen=True)
class ModelSource:
    """Where `model.name` points, before anything is loaded."""

    kind: SourceKind
    name: str
    location: str  # preset name, folder path, or hub id
    run_dir: Path | None = None

    @property
    def preset(self) -> Preset | None:
        return PRESETS.get(self.location) if self.kind == "preset" else None


def resolve_source(name: str) -> ModelSource:
    """Preset, then local folder (a run's output or an HF folder), then hub id."""
    if name in PRESETS:
        return ModelSource("preset", name, name)
    path = Path(name).expanduser()
    if path.exists():
        if (path / "run.json").is_file():
            return _run_source(name, path)
        if (path / "config.json").is_file():
            return ModelSource("folder", name, str(path))
        if (path / ADAPTER_FILE).is_file():
            return ModelSource("adapter", name, str(path))
        raise UserError(f"model.name '{name}' is a folder without config.json or run.json: it is neither a "
                        "Hugging Face model folder nor an llmforge run. Point it at the folder that holds "
                        "config.json, or at a run's output_dir.")
    beside = _folders_beside(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or beside is not None:
        raise UserError(f"model.name '{name}' looks like a path but does not exist.{_nearest(name, path, beside)}")
    return ModelSource("hub", name, name)


def _folders_beside(path: Path) -> list[str] | None:
    """The names of the folders in the folder a missing path names (`runs/sft-lroa`: those in runs/), None when
    that folder is not here. A name whose first part is a folder here is a path, not a hub id: asking the hub
    would only fail."""
    parent = path.parent
    if parent == Path(".") or not parent.is_dir():
        return None
    return sorted(child.name for child in parent.iterdir() if child.is_dir() and not child.name.startswith("."))


def _nearest(name: str, path: Path, beside: list[str] | None) -> str:
    if beside is None:
        return did_you_mean(name, PRESETS)
    close = closest(path.name, beside)
    if close:
        return f" Did you mean '{path.parent / close}'?"
    shown = ", ".join(beside[:10]) + (", ..." if len(beside) > 10 else "")
    return f" {path.parent}/ holds {shown}." if beside else f" {path.parent}/ is empty."


def _run_source(name: str, run_dir: Path) -> ModelSource:
    info = read_run_info(run_dir)
    final = run_dir / "final"
    if info.get("status") != "completed" or not any((final / f).is_file() for f in ("config.json", ADAPTER_FILE)):
        raise UserError(f"model.name '{name}' is an llmforge run that has not completed (status: "
                        f"{info.get('status', 'unknown')}). Finish it first (run the same command again to "
                        "resume), or name a completed run.")
    return ModelSource("run", name, str(final), run_dir=run_dir)
