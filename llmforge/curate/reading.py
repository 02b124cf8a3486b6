"""Rows of a source, one at a time, with their row numbers; malformed rows reported, never lost silently.

JSON files are read here, row by row, whether they hold JSON Lines or one array (the shape of Stanford
Alpaca's own alpaca_data.json), so a broken line or item is one malformed row (with its file and place)
rather than a failed load; every other source goes through the data layer's `load_source`, streamed where
it can be. A source's format, when the recipe names none, is read off its first good row's fields, the
same way for every kind of file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmforge.config.schema import DataSource
from llmforge.data.sources import describe, file_digest, infer_format, load_source


@dataclass
class Row:
    source: int  # which source (index into data.train)
    number: int  # 1-based row (line) number within the source
    where: str  # how messages name it: "file.jsonl, line 7" or "source 'x', row 7"
    value: dict[str, Any] | None  # None: malformed
    error: str | None = None


def _json_files(source: DataSource) -> list[Path] | None:
    if not source.path:
        return None
    path = Path(source.path)
    files = sorted(p for p in path.rglob("*") if p.suffix in (".json", ".jsonl")) if path.is_dir() else [path]
    return files if files and all(f.suffix in (".json", ".jsonl") and f.is_file() for f in files) else None


def source_format(source: DataSource) -> str:
    """The row format of a source (named, else read off its first good row's fields)."""
    if source.format:
        return source.format
    first = next((row.value for row in read_rows(source, 0) if row.value is not None), None)
    if first is None:
        return "text"
    return infer_format([source.columns.get(k, k) for k in first] + list(source.columns), describe(source))


def fingerprint(source: DataSource) -> str:
    """A source's fingerprint. JSON files are digested, not parsed: broken lines are what curation is for,
    and a parser that types columns from the first rows refuses a file with one."""
    files = _json_files(source)
    return file_digest(files) if files is not None else load_source(source, streaming=True).fingerprint


def _json_items(file: Path) -> Iterator[tuple[int, str, Any, str | None]]:
    """(row number, where, value or None, error) of each row of a .json/.jsonl file: its lines, or the items
    of the one array it holds."""
    from llmforge.data.rows import _looks_like_lines

    if file.suffix == ".json" and not _looks_like_lines(file):
        try:
            whole = json.loads(file.read_text(encoding="utf-8", errors="replace"))
        except json.JSONDecodeError as exc:
            yield 1, f"{file.name}, line {exc.lineno}", None, f"not valid JSON ({exc.msg})"
            return
        items = whole if isinstance(whole, list) else [whole]
        for number, item in enumerate(items, 1):
            yield number, f"{file.name}, item {number - 1}", item, None
        return
    with file.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield number, f"{file.name}, line {number}", json.loads(line), None
            except json.JSONDecodeError as exc:
                yield number, f"{file.name}, line {number}", None, f"not valid JSON ({exc.msg})"


def read_rows(source: DataSource, index: int) -> Iterator[Row]:
    files = _json_files(source)
    label = describe(source)
    if files is None:
        loaded = load_source(source, streaming=bool(source.path))
        for number, row in enumerate(loaded.rows, 1):
            yield Row(index, number, f"{label}, row {number}", dict(row))
        return
    rename = {theirs: ours for ours, theirs in source.columns.items()}
    count = 0
    for file in files:
        for number, where, value, error in _json_items(file):
            if source.max_samples is not None and count >= source.max_samples:
                return
            count += 1
            if error is not None:
                yield Row(index, number, where, None, error)
            elif not isinstance(value, dict):
                yield Row(index, number, where, None, f"a JSON {type(value).__name__}, not an object")
            else:
                yield Row(index, number, where, {rename.get(k, k): v for k, v in value.items()})
