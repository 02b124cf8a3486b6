"""SFT data: conversations or text -> (input_ids, labels), with a stated over-long policy.

Samples longer than `data.max_length` are truncated (default) or dropped
(`data.truncation: drop`); a truncated sample left with no loss-carrying token is
dropped. Every count is logged and kept in run.json. Packing is left to TRL's
padding-free packer, which keeps samples apart by their position ids.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset, DatasetDict, concatenate_datasets

from llmforge.config.schema import DataConfig
from llmforge.data.cache import cache_key, cache_root, prepare_once
from llmforge.data.chat import IGNORE, encode_row
from llmforge.data.formats import graded_prompts
from llmforge.data.pretrain import tokenizer_fingerprint
from llmforge.data.sources import LoadedSource, load_source
from llmforge.errors import UserError

log = logging.getLogger("llmforge")
SFT_FORMATS = ("alpaca", "sharegpt", "messages", "text")
SFT_VERSION = 2  # 2: cache entries carry their row/token counts


@dataclass
class SFTData:
    train: Dataset
    eval: Dataset | None
    accuracy: list[dict[str, Any]]  # held-out prompts with their verifiable answers
    fingerprints: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


def _encode_fn(tokenizer: Any, fmt: str, label: str, max_length: int, policy: str, train_on: str):
    def encode(row: dict[str, Any], index: int) -> dict[str, Any]:
        encoded = encode_row(tokenizer, row, fmt, label, index, train_on)
        if encoded is None:
            return {"input_ids": [], "labels": [], "status": "empty"}
        ids, labels, status = encoded.input_ids, encoded.labels, "kept"
        if len(ids) > max_length:
            if policy == "drop":
                return {"input_ids": [], "labels": [], "status": "dropped_too_long"}
            ids, labels, status = ids[:max_length], labels[:max_length], "truncated"
        if all(label_id == IGNORE for label_id in labels[1:]):
            return {"input_ids": [], "labels": [], "status": "dropped_no_answer_left"}
        return {"input_ids": ids, "labels": labels, "status": status}

    return encode


def _encoded(sources: list[LoadedSource], tokenizer: Any, cfg: DataConfig, section: str) -> tuple[Dataset, Counter]:
    parts, counts = [], Counter()
    for src in sources:
        if src.format not in SFT_FORMATS:
            raise UserError(f"data.{section}: {src.label} is in '{src.format}' format; SFT trains on "
                            f"{', '.join(SFT_FORMATS)} rows (prompt rows only go in data.eval, for accuracy).")
        encoded = src.rows.map(
            _encode_fn(tokenizer, src.format, src.label, cfg.max_length, cfg.truncation, cfg.train_on),
            with_indices=True, remove_columns=src.rows.column_names, desc=f"templating {src.label}")
        counts.update(encoded["status"])
        parts.append(encoded.filter(lambda status: status in ("kept", "truncated"), input_columns="status"))
    data = concatenate_datasets(parts).remove_columns("status")
    if len(data) == 0:
        raise UserError(f"data.{section}: no usable samples ({dict(counts)}). Check the format and the rows, "
                        "or raise data.max_length.")
    return data, counts


def prepare_sft_data(cfg: DataConfig, tokenizer: Any, seed: int) -> SFTData:
    if cfg.streaming:
        raise UserError("data.streaming applies to pretraining; SFT datasets are prepared and cached whole.")
    train = [load_source(s) for s in cfg.train]
    evals = [load_source(s) for s in cfg.eval]
    accuracy_sources = [s for s in evals if s.format == "prompt"]
    loss_sources = [s for s in evals if s.format != "prompt"]
    fingerprints = {"train": [s.fingerprint for s in train], "eval": [s.fingerprint for s in evals],
                    "tokenizer": tokenizer_fingerprint(tokenizer), "chat_template": tokenizer.chat_template}
    key = cache_key([fingerprints, cfg.max_length, cfg.truncation, cfg.train_on, cfg.eval_fraction, seed,
                     SFT_VERSION])
    def build() -> tuple[DatasetDict, dict[str, Any]]:
        train_data, counts = _encoded(train, tokenizer, cfg, "train")
        meta = {"train_counts": dict(counts)}
        splits = {"train": train_data}
        if loss_sources:
            splits["eval"], eval_counts = _encoded(loss_sources, tokenizer, cfg, "eval")
            meta["eval_counts"] = dict(eval_counts)
        elif cfg.eval_fraction > 0:
            held = train_data.train_test_split(test_size=cfg.eval_fraction, seed=seed)
            splits = {"train": held["train"], "eval": held["test"]}
        return DatasetDict(splits), meta

    data, stats = prepare_once(cache_root(cfg.cache_dir), key, build)
    log.info("SFT samples: %s (max_length %d, over-long policy: %s)", stats.get("train_counts"), cfg.max_length,
             cfg.truncation)
    stats.update(train_samples=stats["splits"]["train"]["rows"], train_tokens=stats["splits"]["train"]["tokens"])
    accuracy = [item for src in accuracy_sources for item in graded_prompts(src.rows, src.label)]
    fingerprints["prepared"] = key
    return SFTData(data["train"], data.get("eval"), accuracy, fingerprints, stats)

