"""Load one `data.train`/`data.eval` entry as a `datasets` dataset.

Built-ins are generated, local files go through the `datasets` json/parquet/csv/text
builders, anything else is a hub dataset through `load_dataset`. Rows come out with
the column names the format expects (after `columns:` renaming).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, IterableDataset

from llmforge.config.schema import BUILDERS, DataSource
from llmforge.data.builtin import builtin_fingerprint, get_builtin, resolve_options
from llmforge.data.rows import FileRows, SourceLabel, read_json_files
from llmforge.errors import UserError
from llmforge.hub import offline_hint


@dataclass
class LoadedSource:
    rows: Dataset | IterableDataset
    format: str
    fingerprint: str  # content hash for files and built-ins; the dataset fingerprint for hub data
    label: str  # how errors name this source


def describe(source: DataSource) -> str:
    return f"data source '{source.name or source.path}' (split {source.split})"


def load_source(source: DataSource, streaming: bool = False, default_format: str | None = None) -> LoadedSource:
    """`default_format` applies to files and hub data that name none; otherwise it is read off the columns."""
    label = describe(source)
    if source.name and (builtin := get_builtin(source.name)):
        options = resolve_options(builtin, source.split, source.options, label)
        fmt = source.format or builtin.format
        if fmt != builtin.format:
            raise UserError(f"{label}: built-in '{builtin.name}' is in '{builtin.format}' format, not '{fmt}'.")
        rows_fn = builtin.rows
        if streaming:
            rows = IterableDataset.from_generator(_generate, gen_kwargs={"fn": rows_fn, "split": source.split,
                                                                          "options": options})
        else:
            rows = Dataset.from_list(list(rows_fn(source.split, options)))
        fingerprint = builtin_fingerprint(builtin, source.split, options)
    elif source.options:
        raise UserError(f"{label}: 'options' only applies to built-in datasets.")
    elif source.path:
        rows, fingerprint, label = _load_files(dataset_folder(Path(source.path), source.split, label), source,
                                               streaming, label)
        fmt = source.format
    else:
        rows, fingerprint = _load_hub(source, streaming, label)
        fmt = source.format
    rows = _rename_columns(rows, source, label)
    fmt = fmt or default_format or infer_format(rows.column_names, label)
    if source.max_samples is not None:
        rows = rows.take(source.max_samples) if streaming else rows.select(range(min(source.max_samples,
                                                                                      len(rows))))
    return LoadedSource(rows=rows, format=fmt, fingerprint=fingerprint, label=label)


def infer_format(columns: list[str] | None, label: str) -> str:
    """The row format a source's columns imply, for sources that do not name one."""
    if columns is None:  # a stream that does not know its columns yet
        return "text"
    present = set(columns)
    for fmt, needed in (("messages", {"messages"}), ("sharegpt", {"conversations"}),
                        ("preference", {"chosen", "rejected"}), ("alpaca", {"instruction", "output"}),
                        ("prompt", {"prompt"}), ("text", {"text"})):
        if needed <= present:
            return fmt
    raise UserError(f"{label}: cannot tell the row format from its columns ({', '.join(columns)}). Set format: "
                    "text, alpaca, sharegpt, messages, preference or prompt, and map columns with "
                    "columns: {expected: yours}.")


def _generate(fn: Any, split: str, options: Any):
    yield from fn(split, options)


def dataset_folder(path: Path, split: str, label: str) -> Path:
    """A curate run's folder (or its final/) read as its `split`'s shards; any other path as it is."""
    final = path / "final" if (path / "run.json").is_file() else path
    if not (final / "manifest.json").is_file() or not (final / "train").is_dir():
        return path
    if not (final / split).is_dir():
        have = sorted(p.name for p in final.iterdir() if p.is_dir())
        raise UserError(f"{label}: the curated dataset {path} has no '{split}' split (it has: {', '.join(have)}). "
                        "Set split: to one of those, or curate.split to make it.")
    return final / split


def _files_of(path: Path, label: str) -> list[Path]:
    if not path.exists():
        raise UserError(f"{label}: file not found: {path}. Check data.*.path (relative to {Path.cwd()}).")
    files = sorted(p for p in path.rglob("*") if p.suffix in BUILDERS) if path.is_dir() else [path]
    if not files:
        raise UserError(f"{label}: folder {path} holds no {'/'.join(BUILDERS)} files.")
    kinds = {BUILDERS.get(f.suffix) for f in files}
    if None in kinds:
        raise UserError(f"{label}: cannot read '{path.suffix}' files; use one of {', '.join(BUILDERS)}.")
    if len(kinds) > 1:
        raise UserError(f"{label}: folder {path} mixes file types ({', '.join(sorted(kinds))}); "
                        "give each type as its own source.")
    return files


def file_digest(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _load_files(path: Path, source: DataSource, streaming: bool, label: str):
    files = _files_of(path, label)
    builder = BUILDERS[files[0].suffix]
    if any(f.stat().st_size == 0 for f in files):
        empty = next(f for f in files if f.stat().st_size == 0)
        raise UserError(f"{label}: {empty} is empty. Give it rows or remove it from the recipe.")
    if builder == "json" and not streaming:  # read here, so errors name the line (data/rows.py)
        parsed = read_json_files(files)
        try:
            rows = Dataset.from_list(parsed.rows)
        except Exception as exc:  # pyarrow's type inference on nested values
            raise UserError(f"{label}: could not hold {path}'s rows in one table ({_root_cause(exc)}). Give every "
                            "row the same structure for each field.") from None
        return rows, file_digest(files), SourceLabel(label, tuple(parsed.files))
    try:
        rows = datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train",
                                     streaming=streaming)
    except Exception as exc:  # the builders raise many types for malformed files
        raise UserError(f"{label}: could not read {path} as {builder}: {_root_cause(exc)}. "
                        "Check that every line/row is well-formed.") from None
    kind = {"csv": "csv", "text": "jsonl"}.get(builder, "rows")  # a text file's rows are its lines
    located = SourceLabel(label, (FileRows(0, files[0].name, kind),)) if len(files) == 1 else label
    return rows, file_digest(files), located


def _load_hub(source: DataSource, streaming: bool, label: str):
    try:
        rows = datasets.load_dataset(source.name, source.subset, split=source.split, streaming=streaming)
    except Exception as exc:
        raise UserError(f"{label}: not a built-in dataset and could not be loaded from the Hugging Face hub "
                        f"({_root_cause(exc)}). Built-ins: see `llmforge datasets`; local files go in 'path'."
                        f"{offline_hint()}") from None
    fingerprint = getattr(rows, "_fingerprint", None) or hashlib.sha256(
        f"{source.name}:{source.subset}:{source.split}".encode()).hexdigest()[:16]
    return rows, fingerprint


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _rename_columns(rows: Dataset | IterableDataset, source: DataSource, label: str):
    if not source.columns:
        return rows
    present = rows.column_names
    if present is not None:
        missing = [theirs for theirs in source.columns.values() if theirs not in present]
        if missing:
            raise UserError(f"{label}: columns maps to '{missing[0]}', which the data does not have. "
                            f"Its columns are: {', '.join(present)}.")
    return rows.rename_columns({theirs: ours for ours, theirs in source.columns.items() if theirs != ours})
