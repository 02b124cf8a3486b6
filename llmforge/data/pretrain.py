"""Pretraining data: text sources -> tokens + EOS -> fixed blocks, cached or streamed."""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset, DatasetDict, IterableDataset, concatenate_datasets, interleave_datasets

from llmforge.config.schema import DataConfig, DataSource
from llmforge.data.cache import cache_key, cache_root, prepare_once
from llmforge.data.packing import pack_rows
from llmforge.data.rows import where
from llmforge.data.sources import LoadedSource, load_source
from llmforge.errors import UserError

log = logging.getLogger("llmforge")

PACKING_VERSION = 3  # 3: cache entries count the rows left out for having no text


@dataclass
class PreparedData:
    train: Dataset | IterableDataset
    eval: Dataset | None
    fingerprints: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


def tokenizer_fingerprint(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    blob = backend.to_str() if backend is not None else f"{tokenizer.name_or_path}:{len(tokenizer)}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _text_sources(sources: list[DataSource], streaming: bool, section: str) -> list[LoadedSource]:
    loaded = [load_source(s, streaming=streaming, default_format="text") for s in sources]
    for src in loaded:
        if src.format != "text":
            raise UserError(f"data.{section}: {src.label} is in '{src.format}' format; pretraining reads "
                            "'text' rows. Use a text source (e.g. name: tinytext) or set format: text.")
        columns = src.rows.column_names
        if columns is not None and "text" not in columns:
            raise UserError(f"data.{section}: {src.label} has no 'text' column (columns: {', '.join(columns)}). "
                            "Map yours with columns: {text: YOUR_COLUMN}.")
    return loaded


def _tokenize_fn(tokenizer: Any, label: str):
    eos = tokenizer.eos_token_id

    def tokenize(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        texts = []
        for index, text in zip(indices, batch["text"], strict=True):
            if isinstance(text, float) and math.isnan(text):  # an empty cell read through pandas
                text = None
            if text is not None and not isinstance(text, str):
                raise UserError(f"{where(label, index)}: 'text' must be a string, got "
                                f"{type(text).__name__} ({str(text)[:60]!r}). Fix or remove that row.")
            texts.append(text or "")
        encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
        return {"input_ids": [ids + [eos] for ids, text in zip(encoded, texts, strict=True) if text]}

    return tokenize


def _tokenized(src: LoadedSource, tokenizer: Any) -> Dataset | IterableDataset:
    kwargs = {"batched": True, "with_indices": True, "remove_columns": src.rows.column_names}
    if isinstance(src.rows, Dataset):
        kwargs["desc"] = f"tokenizing {src.label}"
    return src.rows.map(_tokenize_fn(tokenizer, src.label), **kwargs)


def _packed(sources: list[LoadedSource], tokenizer: Any, cfg: DataConfig) -> tuple[Dataset, int]:
    """The packed blocks, and how many rows were left out for having no text (null, NaN or empty)."""
    tokenized = concatenate_datasets([_tokenized(src, tokenizer) for src in sources])
    if len(tokenized) == 0:
        raise UserError(f"{', '.join(s.label for s in sources)}: no non-empty text rows. Check the file "
                        "and the 'text' column mapping.")
    empty = sum(len(src.rows) for src in sources) - len(tokenized)
    if empty:
        log.warning("%s: %d rows without text (null, NaN or empty) were left out.",
                    ", ".join(s.label for s in sources), empty)
    packed = Dataset.from_generator(pack_rows, gen_kwargs={"rows": tokenized, "block_size": cfg.max_length,
                                                           "packing": cfg.packing})
    return packed, empty


def prepare_pretrain_data(cfg: DataConfig, tokenizer: Any, seed: int, max_steps: int) -> PreparedData:
    if cfg.packing == "grouped":
        raise UserError("data.packing=grouped batches SFT rows; pretraining packs fixed blocks (true or auto) or "
                        "keeps one document per row (false).")
    cfg = cfg.model_copy(update={"packing": cfg.packing is not False})  # auto: fixed blocks
    if cfg.streaming:
        return _streaming(cfg, tokenizer, max_steps)
    train = _text_sources(cfg.train, False, "train")
    evals = _text_sources(cfg.eval, False, "eval")
    fingerprints = {"train": [s.fingerprint for s in train], "eval": [s.fingerprint for s in evals],
                    "tokenizer": tokenizer_fingerprint(tokenizer)}
    key = cache_key([fingerprints, cfg.max_length, cfg.packing, cfg.eval_fraction, seed, PACKING_VERSION])

    def build() -> tuple[DatasetDict, dict[str, Any]]:
        train_sources, eval_sources = train, evals
        if not evals and cfg.eval_fraction > 0:
            rows = concatenate_datasets([s.rows for s in train]).train_test_split(test_size=cfg.eval_fraction,
                                                                                  seed=seed)
            train_sources = [LoadedSource(rows["train"], "text", "", "data.train")]
            eval_sources = [LoadedSource(rows["test"], "text", "", "data.train (held-out share)")]
        splits, meta = {}, {}
        splits["train"], meta["train_empty_rows"] = _packed(train_sources, tokenizer, cfg)
        if eval_sources:
            splits["eval"], meta["eval_empty_rows"] = _packed(eval_sources, tokenizer, cfg)
        return DatasetDict(splits), meta

    data, meta = prepare_once(cache_root(cfg.cache_dir), key, build)
    fingerprints["prepared"] = key
    stats = {f"{name}_blocks": split["rows"] for name, split in meta["splits"].items()}
    stats["train_tokens"] = meta["splits"]["train"]["tokens"]
    stats.update({key: meta[key] for key in ("train_empty_rows", "eval_empty_rows") if key in meta})
    return PreparedData(train=data["train"], eval=data.get("eval"), fingerprints=fingerprints, stats=stats)


def _streaming(cfg: DataConfig, tokenizer: Any, max_steps: int) -> PreparedData:
    if max_steps <= 0:
        raise UserError("data.streaming needs train.max_steps: a stream has no length to derive steps from.")
    if not cfg.eval and cfg.eval_fraction > 0:
        raise UserError("data.eval_fraction cannot hold out from a stream; list held-out sources in data.eval.")
    train = _text_sources(cfg.train, True, "train")
    streams = [_tokenized(src, tokenizer) for src in train]
    stream = streams[0] if len(streams) == 1 else interleave_datasets(streams, stopping_strategy="all_exhausted")
    packed = IterableDataset.from_generator(pack_rows, gen_kwargs={"rows": stream, "block_size": cfg.max_length,
                                                                   "packing": cfg.packing})
    evals = _text_sources(cfg.eval, False, "eval")
    eval_data = _packed(evals, tokenizer, cfg)[0] if evals else None
    fingerprints = {"train": [s.fingerprint for s in train], "eval": [s.fingerprint for s in evals],
                    "tokenizer": tokenizer_fingerprint(tokenizer), "streaming": True}
    return PreparedData(train=packed, eval=eval_data, fingerprints=fingerprints, stats={"streaming": True})
