"""SFT data: conversations or text -> (input_ids, labels), with a stated over-long policy.

Samples longer than `data.max_length` are truncated (default) or dropped
(`data.truncation: drop`); a truncated sample left with no loss-carrying token is
dropped. Every count is logged and kept in run.json. Packing is left to TRL's
padding-free packer, which keeps samples apart by their position ids.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset

from llmforge.config.schema import SFT_FORMATS, DataConfig
from llmforge.data.cache import cache_key
from llmforge.data.chat import IGNORE, encode_row
from llmforge.data.formats import graded_prompts
from llmforge.data.pretrain import tokenizer_fingerprint
from llmforge.data.sources import LoadedSource, load_source
from llmforge.data.splits import check_formats, counted, encode_sources, prepare_splits
from llmforge.errors import UserError

log = logging.getLogger("llmforge")
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
    reads = f"SFT trains on {', '.join(SFT_FORMATS)} rows (prompt rows only go in data.eval, for accuracy)"
    check_formats(train, SFT_FORMATS, "train", reads)
    check_formats(loss_sources, SFT_FORMATS, "eval", reads)

    def encoder(src: LoadedSource):
        return _encode_fn(tokenizer, src.format, src.label, cfg.max_length, cfg.truncation, cfg.train_on)

    data, stats = prepare_splits(cfg, key, seed, train, loss_sources,
                                 lambda sources, section: encode_sources(sources, encoder, section, "samples"))
    log.info("SFT samples: %s (max_length %d, over-long policy: %s)", counted(stats.get("train_counts")), cfg.max_length,
             cfg.truncation)
    stats.update(train_samples=stats["splits"]["train"]["rows"], train_tokens=stats["splits"]["train"]["tokens"])
    accuracy = [item for src in accuracy_sources for item in graded_prompts(src.rows, src.label)]
    fingerprints["prepared"] = key
    return SFTData(data["train"], data.get("eval"), accuracy, fingerprints, stats)



def row_lengths(rows: Dataset) -> list[int]:
    """Tokens per row, read from the Arrow column (no Python pass over the ids)."""
    import pyarrow.compute as pc

    return pc.list_value_length(rows.with_format("arrow")["input_ids"]).to_pylist()
