"""Which checkpoints are complete, which to resume from, which to delete.

The Trainer writes `checkpoint-N/` file by file; a kill in the middle leaves a folder
that looks like a checkpoint but is not one. A checkpoint counts only once the engine
has written its completion marker, after the Trainer's `on_save` (every file written,
on every rank). Resume picks the newest marked one; unmarked folders are debris.
"""

from __future__ import annotations

import re
from pathlib import Path

from llmforge.engine.files import atomic_write_json, remove_dir
from llmforge.errors import UserError

MARKER = "llmforge_complete.json"
PATTERN = re.compile(r"^checkpoint-(\d+)$")


def step_of(path: Path) -> int:
    match = PATTERN.match(path.name)
    return int(match.group(1)) if match else -1


def all_checkpoints(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and PATTERN.match(p.name)), key=step_of)


def is_complete(checkpoint: Path) -> bool:
    return (checkpoint / MARKER).is_file()


def complete_checkpoints(folder: Path) -> list[Path]:
    return [p for p in all_checkpoints(folder) if is_complete(p)]


def mark_complete(checkpoint: Path, step: int) -> None:
    atomic_write_json(checkpoint / MARKER, {"step": step})


def rotate(folder: Path, keep_last: int) -> list[Path]:
    """Delete complete checkpoints beyond the newest `keep_last`, and debris older than the newest."""
    complete = complete_checkpoints(folder)
    doomed = complete[:-keep_last]
    newest = step_of(complete[-1]) if complete else -1
    doomed += [p for p in all_checkpoints(folder) if not is_complete(p) and step_of(p) < newest]
    for path in doomed:
        remove_dir(path)
    return doomed


def discard_incomplete(folder: Path) -> list[Path]:
    """Remove checkpoint folders without a marker (a kill during their save)."""
    debris = [p for p in all_checkpoints(folder) if not is_complete(p)]
    for path in debris:
        remove_dir(path)
    return debris


def resume_point(setting: str, folder: Path) -> Path | None:
    """The checkpoint to resume from under `checkpoint.resume` (auto | never | PATH)."""
    if setting == "never":
        if complete_checkpoints(folder):
            raise UserError(f"checkpoint.resume=never, but {folder} already holds checkpoints. Use a new "
                            "output_dir, or checkpoint.resume=auto to continue from them.")
        return None
    if setting == "auto":
        complete = complete_checkpoints(folder)
        return complete[-1] if complete else None
    path = Path(setting).expanduser()
    if not path.is_dir():
        raise UserError(f"checkpoint.resume: {path} does not exist. Use auto, never, or a checkpoint folder.")
    if not is_complete(path):
        raise UserError(f"checkpoint.resume: {path} is not a complete llmforge checkpoint (no {MARKER}); "
                        "it was interrupted while saving. Name an earlier checkpoint.")
    return path
