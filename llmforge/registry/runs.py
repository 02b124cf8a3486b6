"""Finding previous runs: an output folder with a run.json is an artifact later stages name."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmforge.errors import UserError

RUN_FILE = "run.json"


def read_run_info(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}). It was edited or truncated by hand; "
                        "restore it or start a new output_dir.") from None


def find_runs(root: Path, max_depth: int = 3) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Run folders under `root` (their own checkpoints are not searched)."""
    if not root.is_dir():
        return
    stack = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        if (folder / RUN_FILE).is_file():
            try:
                yield folder, read_run_info(folder)
            except UserError:
                yield folder, {"status": "unreadable"}
            continue
        if depth < max_depth:
            children = sorted((c for c in folder.iterdir() if c.is_dir() and not c.name.startswith(".")),
                              reverse=True)
            stack.extend((child, depth + 1) for child in children)
