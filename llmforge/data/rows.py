"""Local JSON and JSON Lines files read row by row, so every error names a place the user can find.

`datasets`' json builder reads with pyarrow and, when a row breaks its type inference, re-reads the file
through pandas, which turns valid strings like "1" into ints and reports positions in its own terms
("Trailing data at position 54", row numbers of the re-read file). Here each line is parsed on its own:
invalid JSON names its file, line and column; a row whose field type differs from the rows before it
names its line and field. Row positions are kept per source (`SourceLabel`) so later errors (a missing
field, a wrong role) say "line 3 of pairs.jsonl" too: a 1-based line for JSONL, an index for JSON arrays.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmforge.errors import UserError


@dataclass(frozen=True)
class FileRows:
    start: int  # index of the file's first row in the source
    name: str
    kind: str  # jsonl | json | csv | rows
    skipped: tuple[int, ...] = ()  # JSONL: line numbers of blank lines (no row)

    def where(self, local: int) -> str:
        if self.kind == "jsonl":
            line = local + 1
            for blank in self.skipped:  # blank lines before this row shift it down
                if blank <= line:
                    line += 1
            return f"line {line} of {self.name}"
        if self.kind == "json":
            return f"index {local} of {self.name}"
        if self.kind == "csv":
            return f"line {local + 2} of {self.name}"  # after the header line
        return f"row {local} of {self.name}"


class SourceLabel(str):
    """How errors name a data source; `row(i)` names its i-th row where the user can find it."""

    files: tuple[FileRows, ...] = ()

    def __new__(cls, text: str, files: tuple[FileRows, ...] = ()) -> SourceLabel:
        label = super().__new__(cls, text)
        label.files = files
        return label

    def __reduce__(self):  # keep the row map when datasets pickles a closure that holds the label
        return (SourceLabel, (str(self), self.files))

    def row(self, index: int) -> str:
        if not self.files:
            return f"{self}, row {index}"
        starts = [f.start for f in self.files]
        file = self.files[max(0, bisect.bisect_right(starts, index) - 1)]
        return f"{self}, {file.where(index - file.start)}"


def where(label: str, index: int) -> str:
    """'<source>, line 3 of x.jsonl' for sources read here, '<source>, row 3' otherwise."""
    return label.row(index) if isinstance(label, SourceLabel) else f"{label}, row {index}"


@dataclass
class Parsed:
    rows: list[dict[str, Any]] = field(default_factory=list)
    files: list[FileRows] = field(default_factory=list)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "mapping"}.get(type(value), type(value).__name__)


def _check_row(row: Any, place: str, kinds: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """A row must be a mapping, and each field keep the JSON type it had in the first row that set it."""
    if not isinstance(row, dict):
        raise UserError(f"{place}: a row must be a JSON object ({{\"field\": value, ...}}), got {_json_kind(row)}.")
    for key, value in row.items():
        kind = _json_kind(value)
        if kind == "null":
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue  # NaN/Infinity are judged by the field's reader (e.g. scores must be finite)
        first = kinds.setdefault(key, (kind, place))
        if first[0] != kind:
            raise UserError(f"{place}: field '{key}' is a {kind}, but it is a {first[0]} in earlier rows "
                            f"(first at {first[1]}). Give every row the same type for '{key}' (quote numbers "
                            "that are text, e.g. \"1\").")
    return row


def _jsonl(path: Path, start: int, kinds: dict) -> Iterator[tuple[dict[str, Any] | None, int]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                yield None, number
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}, line {number}, column {exc.colno}: invalid JSON ({exc.msg}). Each line "
                                "of a .jsonl file must be one complete JSON object.") from None
            yield _check_row(row, f"{path}, line {number}", kinds), number


def read_json_files(files: list[Path]) -> Parsed:
    """Rows of .jsonl/.json files (one object per line, or a top-level array of objects)."""
    parsed, kinds = Parsed(), {}
    for path in files:
        start = len(parsed.rows)
        try:
            if path.suffix == ".jsonl" or _looks_like_lines(path):
                skipped = []
                for row, number in _jsonl(path, start, kinds):
                    if row is None:
                        skipped.append(number)
                    else:
                        parsed.rows.append(row)
                parsed.files.append(FileRows(start, path.name, "jsonl", tuple(skipped)))
                continue
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}, line {exc.lineno}, column {exc.colno}: invalid JSON ({exc.msg}). A .json "
                                "file holds one array of row objects; use .jsonl for one object per line.") from None
        except UnicodeDecodeError:
            raise UserError(f"{path}: not UTF-8 text. Save it as UTF-8.") from None
        if not isinstance(data, list):
            raise UserError(f"{path}: a .json data file holds a top-level array of row objects ([{{...}}, ...]), "
                            f"not a {_json_kind(data)}. Use .jsonl for one object per line.")
        parsed.rows += [_check_row(row, f"{path}, index {i}", kinds) for i, row in enumerate(data)]
        parsed.files.append(FileRows(start, path.name, "json"))
    _missing_as_null(parsed.rows, kinds)
    return parsed


def _missing_as_null(rows: list[dict[str, Any]], kinds: dict[str, tuple[str, str]]) -> None:
    """NaN in a text (or list) field means a missing value, as pandas writes it: make it null, which the
    reader of that field counts or refuses. In a number field NaN stays, for its reader to judge."""
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float) and not math.isfinite(value) and kinds.get(key, ("number",))[0] != "number":
                row[key] = None


def _looks_like_lines(path: Path) -> bool:
    """A .json file that is really JSON Lines (several objects, one per line)."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                return line.lstrip().startswith("{") and not line.rstrip().endswith(",") and _one_object(line)
    return False


def _one_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False
