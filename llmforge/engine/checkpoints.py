"""Which checkpoints are complete and intact, which to resume from, which to delete.

The Trainer writes `checkpoint-N/` file by file; a kill in the middle leaves a folder
that looks like a checkpoint but is not one. A checkpoint counts only once the engine
has written its completion marker, after the Trainer's `on_save` (every file written,
on every rank). The marker lists every file with its size and sha256, and where
metrics.jsonl ended when it was taken: a checkpoint is trusted only when its files still
match (a truncated or corrupted file makes resume fall back to the newest one that
does), and a resumed run cuts metrics.jsonl back to exactly what had been logged then.
Before anything loads a checkpoint, every pickle-based file in it is read by an
unpickler that builds tensors and plain containers only (engine.safe_pickles), so a
planted pickle cannot run code.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmforge.engine.files import atomic_write_json, remove_dir
from llmforge.engine.safe_pickles import UnsafePickle, check_pickles
from llmforge.errors import UserError

log = logging.getLogger("llmforge")

MARKER = "llmforge_complete.json"
PATTERN = re.compile(r"^checkpoint-(\d+)$")
DAMAGED_PREFIX = "damaged-"


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest(checkpoint: Path) -> dict[str, dict[str, Any]]:
    """Every file of the checkpoint (but the marker): size and sha256."""
    return {str(p.relative_to(checkpoint)): {"size": p.stat().st_size, "sha256": _sha256(p)}
            for p in sorted(checkpoint.rglob("*")) if p.is_file() and p.name != MARKER}


def mark_complete(checkpoint: Path, step: int, metrics_offset: int | None = None) -> None:
    marker: dict[str, Any] = {"step": step, "files": manifest(checkpoint)}
    if metrics_offset is not None:
        marker["metrics_offset"] = metrics_offset
    atomic_write_json(checkpoint / MARKER, marker)


def read_marker(checkpoint: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads((checkpoint / MARKER).read_text())
    except (OSError, ValueError):
        return {}


def damage(checkpoint: Path) -> str | None:
    """Why a marked checkpoint cannot be trusted (a file missing, cut short or changed), or None if intact.
    Checkpoints marked by versions that recorded no file list are trusted as before."""
    files = read_marker(checkpoint).get("files")
    if files is None:
        return None if (checkpoint / MARKER).is_file() else f"{MARKER} is unreadable"
    for name, expected in files.items():
        path = checkpoint / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != expected["size"]:
            return f"{name} has {size:,} bytes, {expected['size']:,} were written"
        if _sha256(path) != expected["sha256"]:
            return f"{name} no longer has the content that was written (sha256 differs)"
    return None


def rotate(folder: Path, keep_last: int, keep: tuple[Path, ...] = ()) -> list[Path]:
    """Delete complete checkpoints beyond the newest `keep_last` (but those in `keep`), and debris older
    than the newest."""
    complete = complete_checkpoints(folder)
    doomed = [p for p in complete[:-keep_last] if p not in keep]
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


@dataclass
class Rejected:
    checkpoint: Path
    reason: str


def _set_aside(checkpoint: Path) -> Path:
    aside = checkpoint.with_name(DAMAGED_PREFIX + checkpoint.name)
    if aside.exists():
        remove_dir(aside)
    os.replace(checkpoint, aside)
    return aside


def trust(checkpoint: Path) -> str | None:
    """Why a checkpoint must not be loaded (damaged, or holding a pickle that would run code), or None."""
    reason = damage(checkpoint)
    if reason is None:
        try:
            check_pickles(checkpoint)
        except UnsafePickle as exc:
            reason = str(exc)
    return reason


def resume_point(setting: str, folder: Path, main: bool = True) -> Path | None:
    """The checkpoint to resume from under `checkpoint.resume` (auto | never | PATH).

    `auto` takes the newest complete checkpoint that is intact and safe to load; a damaged newer one is
    set aside as damaged-checkpoint-N (by the main process) and named in a warning.
    """
    if setting == "never":
        if complete_checkpoints(folder):
            raise UserError(f"checkpoint.resume=never, but {folder} already holds checkpoints. Use a new "
                            "output_dir, or checkpoint.resume=auto to continue from them.")
        return None
    if setting == "auto":
        for checkpoint in reversed(complete_checkpoints(folder)):
            reason = trust(checkpoint)
            if reason is None:
                return checkpoint
            if main:
                aside = _set_aside(checkpoint)
                log.warning("Not resuming from %s: %s. It was moved to %s (delete it once you no longer need "
                            "it); trying the checkpoint before it.", checkpoint.name, reason, aside.name)
        return None
    path = Path(setting).expanduser()
    if not path.is_dir():
        raise UserError(f"checkpoint.resume: {path} does not exist. Use auto, never, or a checkpoint folder.")
    if not is_complete(path):
        raise UserError(f"checkpoint.resume: {path} is not a complete llmforge checkpoint (no {MARKER}); "
                        "it was interrupted while saving. Name an earlier checkpoint.")
    reason = trust(path)
    if reason is not None:
        raise UserError(f"checkpoint.resume: {path} cannot be trusted: {reason}. Name another checkpoint, "
                        "or use checkpoint.resume=auto to take the newest intact one.")
    return path
