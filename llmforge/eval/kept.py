"""Measurements kept beside what they measured, reused only while their inputs are the same.

Every evaluation llmforge saves (a pipeline stage's, an lm-eval task's, the safety probe's) is a JSON file
with a `made_from` record (fingerprints of the model, data and options). It is read back only when that
record equals the one the caller would make now; a missing model fingerprint (presets, hub ids) never reuses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmforge.engine.files import atomic_write_json


def kept(path: Path, made_from: dict[str, Any], needs: str | None = "model") -> dict[str, Any] | None:
    """The saved result at `path` if it was made from `made_from` (and `made_from[needs]` is known)."""
    if (needs and made_from.get(needs) is None) or not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return saved if isinstance(saved, dict) and saved.get("made_from") == made_from else None


def keep(path: Path, result: dict[str, Any], made_from: dict[str, Any]) -> dict[str, Any]:
    """Write `result` with its `made_from` atomically; return what was written."""
    record = {**result, "made_from": made_from}
    atomic_write_json(path, record)
    return record
