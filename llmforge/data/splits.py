"""Encode row sources into one training set (and a held-out one), counting what each row became.

Shared by the SFT and preference data: every row is encoded to a `status` (kept,
truncated, or why it was left out); the counts are logged and kept in run.json, and
the prepared splits are cached under a key of everything that shaped them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from datasets import Dataset, DatasetDict, concatenate_datasets

from llmforge.config.schema import DataConfig
from llmforge.data.cache import cache_root, prepare_once
from llmforge.data.sources import LoadedSource
from llmforge.errors import UserError

RowEncoder = Callable[[dict[str, Any], int], dict[str, Any]]
KEPT = ("kept", "truncated")


def check_formats(sources: list[LoadedSource], allowed: tuple[str, ...], section: str, reads: str) -> None:
    """Refuse a source whose row format this stage cannot use; `reads` says what it can."""
    for src in sources:
        if src.format not in allowed:
            raise UserError(f"data.{section}: {src.label} is in '{src.format}' format; {reads}.")


def counted(counts: dict[str, int] | None) -> str:
    """Row counts by what happened to them, as a person reads them: "20,000 kept, 12 truncated"."""
    return ", ".join(f"{n:,} {status.replace('_', ' ')}" for status, n in sorted(
        (counts or {}).items(), key=lambda item: -item[1])) or "none"


def encode_sources(sources: list[LoadedSource], encoder: Callable[[LoadedSource], RowEncoder], section: str,
                   what: str) -> tuple[Dataset, Counter]:
    """Concatenated kept rows of every source, and the count of each status."""
    parts, counts = [], Counter()
    for src in sources:
        encoded = src.rows.map(encoder(src), with_indices=True, remove_columns=src.rows.column_names,
                               desc=f"templating {src.label}")
        counts.update(encoded["status"])
        parts.append(encoded.filter(lambda status: status in KEPT, input_columns="status"))
    data = concatenate_datasets(parts).remove_columns("status")
    if len(data) == 0:
        raise UserError(f"data.{section}: no usable {what} ({counted(counts)}). Check the format and the rows, "
                        "or raise data.max_length.")
    return data, counts


def prepare_splits(cfg: DataConfig, key: str, seed: int, train: list[LoadedSource], held_out: list[LoadedSource],
                   encode: Callable[[list[LoadedSource], str], tuple[Dataset, Counter]],
                   ) -> tuple[DatasetDict, dict[str, Any]]:
    """The cached train (and eval) splits: held_out sources, else `data.eval_fraction` of train."""

    def build() -> tuple[DatasetDict, dict[str, Any]]:
        train_data, counts = encode(train, "train")
        meta, splits = {"train_counts": dict(counts)}, {"train": train_data}
        if held_out:
            splits["eval"], eval_counts = encode(held_out, "eval")
            meta["eval_counts"] = dict(eval_counts)
        elif cfg.eval_fraction > 0:
            held = train_data.train_test_split(test_size=cfg.eval_fraction, seed=seed)
            splits = {"train": held["train"], "eval": held["test"]}
        return DatasetDict(splits), meta

    return prepare_once(cache_root(cfg.cache_dir), key, build)
