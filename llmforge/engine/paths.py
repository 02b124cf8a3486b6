"""Where a run keeps its files, and what running it returned."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class RunOutcome:
    output_dir: Path
    status: str  # completed | skipped
    metrics: dict[str, Any]
    is_main: bool = True


class RunPaths:
    def __init__(self, output_dir: str) -> None:
        self.root = Path(output_dir)
        self.checkpoints = self.root / "checkpoints"
        self.final = self.root / "final"
        self.staging = self.root / ".final-staging"
        self.metrics = self.root / "metrics.jsonl"
        self.work = self.root / "work"  # a producing stage's own resumable state
