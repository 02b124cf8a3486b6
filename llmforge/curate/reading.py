"""Rows of a source, one at a time, with their row numbers; malformed rows reported, never lost silently.

JSON-lines files are read here, line by line, so a broken line is one malformed row (with its file and
line) rather than a failed load; every other source goes through the data layer's `load_source`,
streamed where it can be.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmforge.config.schema import DataSource
from llmforge.data.sources import describe, infer_format, load_source


@dataclass
class Row:
    source: int  # which source (index into data.train)
    number: int  # 1-based row (line) number within the source
    where: str  # how messages name it: "file.jsonl, line 7" or "source 'x', row 7"
    value: dict[str, Any] | None  # None: malformed
    error: str | None = None


def _jsonl_files(source: DataSource) -> list[Path] | None:
    if not source.path:
        return None
    path = Path(source.path)
    files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
    return files if files and all(f.suffix == ".jsonl" and f.is_file() for f in files) else None


def source_format(source: DataSource) -> str:
    """The row format of a source (named, else read off its first good row's fields)."""
    if source.format:
        return source.format
    files = _jsonl_files(source)
    if files is None:
        return load_source(source, streaming=True).format
    for file in files:
        with file.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict):
                    return infer_format([source.columns.get(k, k) for k in row] + list(source.columns),
                                        describe(source))
    return "text"


def read_rows(source: DataSource, index: int) -> Iterator[Row]:
    files = _jsonl_files(source)
    label = describe(source)
    if files is None:
        loaded = load_source(source, streaming=bool(source.path))
        for number, row in enumerate(loaded.rows, 1):
            yield Row(index, number, f"{label}, row {number}", dict(row))
        return
    rename = {theirs: ours for ours, theirs in source.columns.items()}
    count = 0
    for file in files:
        with file.open(encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                if source.max_samples is not None and count >= source.max_samples:
                    return
                count += 1
                where = f"{file.name}, line {number}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield Row(index, number, where, None, f"not valid JSON ({exc.msg})")
                    continue
                if not isinstance(row, dict):
                    yield Row(index, number, where, None, f"a JSON {type(row).__name__}, not an object")
                    continue
                yield Row(index, number, where, {rename.get(k, k): v for k, v in row.items()})
