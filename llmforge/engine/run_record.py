"""The output folder's record of a run: run.json, metrics.jsonl and a single-writer lock."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import subprocess
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llmforge.config.compose import stage_sections, validate_dict
from llmforge.config.schema import RESUME_NEUTRAL_SECTIONS, RunConfig
from llmforge.engine.files import atomic_write_json, atomic_write_text
from llmforge.errors import UserError
from llmforge.registry.folders import relative_reference
from llmforge.registry.runs import RUN_FILE, read_run_info

PACKAGES = ("llmforge", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "tokenizers",
            "deepspeed")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def source_commit() -> str | None:
    """The git commit of the llmforge checkout this runs from, if it is one (suffix -dirty if edited)."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a resolved config that make a run this run: logging or launch changes do not, nor do
    the option sections of other stages (a dpo run does not change when ppo.* gains a key)."""
    others = set(stage_sections()) - {config.get("stage")}
    return {key: value for key, value in config.items() if key not in RESUME_NEUTRAL_SECTIONS and key not in others}


def changes_since(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """How the current config differs from the one a run recorded, in what makes a run this run.

    The recorded config is read with today's defaults for keys the schema gained since it was written, so
    a run made before a new key existed is the same run when the key is left at its default.
    """
    # a config written by a version whose keys no longer validate is compared as recorded
    with contextlib.suppress(ValidationError):
        recorded = validate_dict(recorded).model_dump(mode="json")
    return config_differences(identity(recorded), identity(current))


def config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    found = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return found


class RunRecord:
    """run.json: written at start (running), on failure (failed) and at the end (completed)."""

    def __init__(self, output_dir: Path, config: RunConfig) -> None:
        self.path = output_dir / RUN_FILE
        self.config = config.model_dump(mode="json")
        self.previous = read_run_info(output_dir)
        self.data: dict[str, Any] = {}

    def finished_before(self) -> bool:
        """True when this exact run already completed; an error when a different one did."""
        if self.previous.get("status") != "completed":
            return False
        changed = changes_since(self.previous.get("config", {}), self.config)
        if changed:
            raise UserError(f"{self.path.parent} holds a completed run with a different config ("
                            + "; ".join(changed[:5]) + "). Its output is kept: choose a new output_dir.")
        return True

    def start(self, **fields: Any) -> None:
        resumed = list(self.previous.get("resumed_from", []))
        for parent in fields.get("parents") or []:  # relative too, so a moved pipeline folder still links up
            if parent.get("run_dir"):
                parent["run_dir_relative"] = relative_reference(Path(parent["run_dir"]), self.path.parent)
        self.data = {
            "stage": self.config["stage"],
            "status": "running",
            "output_dir": str(self.path.parent),
            "started_at": self.previous.get("started_at") or _now(),
            "updated_at": _now(),
            "config": self.config,
            "versions": library_versions(),
            "git_commit": source_commit(),
            "host": platform.node(),
            "resumed_from": resumed,
            **fields,
        }
        self._write()

    def update(self, **fields: Any) -> None:
        self.data.update(fields, updated_at=_now())
        self._write()

    def note_resume(self, checkpoint: Path) -> None:
        self.data["resumed_from"].append({"checkpoint": checkpoint.name, "at": _now()})
        self._write()

    def _write(self) -> None:
        atomic_write_json(self.path, self.data)


class MetricsLog:
    """metrics.jsonl: one JSON object per line, every line carries `step`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=float) + "\n")
            handle.flush()

    def truncate_to(self, offset: int) -> None:
        """Keep the first `offset` bytes: what was logged when the checkpoint being resumed was taken."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()[:offset]
        atomic_write_text(self.path, data.decode("utf-8"))

    def truncate_after(self, step: int) -> None:
        """Drop lines logged after `step`: a resumed run logs them again."""
        if not self.path.exists():
            return
        kept = [line for line, row in self._lines() if row.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(f"{line}\n" for line in kept))

    def read(self) -> list[dict[str, Any]]:
        return [row for _, row in self._lines()]

    def _lines(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Each whole line with its record; a line cut short by a kill is skipped."""
        if not self.path.exists():
            return
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                yield line, json.loads(line)
            except json.JSONDecodeError:
                continue

    def mean_loss(self) -> float | None:
        """The training loss averaged over every step the log covers, each logged window weighted by its steps.

        A resumed trainer only saw the steps after its checkpoint, so its own train_loss would describe those
        alone; the log (truncated to the checkpoint, then continued) covers the whole run.
        """
        previous, total, steps = 0, 0.0, 0
        for row in self.read():
            if "loss" in row and "train_loss" not in row and row.get("step", 0) > previous:
                total += row["loss"] * (row["step"] - previous)
                steps += row["step"] - previous
                previous = row["step"]
        return total / steps if steps else None


class OutputLock:
    """One process trains into an output_dir at a time; the OS drops the lock when it dies."""

    def __init__(self, output_dir: Path) -> None:
        self.path = output_dir / ".lock"
        self.handle = None

    def __enter__(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self.path.open("a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            raise UserError(f"Another llmforge process is training into {self.path.parent}. Wait for it to "
                            "finish, stop it, or use another output_dir.") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(str(os.getpid()))
        self.handle.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
