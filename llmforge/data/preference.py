"""Preference and prompt datasets for the rm, dpo and grpo stages: parsed, templated, counted, cached.

Each kept pair carries its conversations (`prompt`, `chosen`, `rejected`: what TRL's
DPO trainer templates itself) and the token ids our templating gives them (what the
reward model trains on), so every stage sees the same text. Pairs longer than
`data.max_length` are dropped (`data.truncation: drop`) or kept to be cut at
max_length by the stage (`truncate`, the default); skipped pairs are counted by reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset

from llmforge.config.schema import PAIR_FORMATS, PROMPT_FORMATS, DataConfig
from llmforge.data.cache import cache_key
from llmforge.data.chat import encode_prompt, render
from llmforge.data.formats import graded_prompts, to_prompt
from llmforge.data.pairs import Pair, common_prefix_length, skip_reason, to_pair
from llmforge.data.pretrain import tokenizer_fingerprint
from llmforge.data.sources import LoadedSource, load_source
from llmforge.data.splits import check_formats, counted, encode_sources, prepare_splits
from llmforge.errors import UserError

log = logging.getLogger("llmforge")
PREFERENCE_VERSION = 2  # 2: truncated pairs keep only the tokens that train
EMPTY: dict[str, Any] = {"prompt": [], "chosen": [], "rejected": [], "prompt_ids": [], "chosen_ids": [],
                         "rejected_ids": []}


@dataclass
class PreferenceData:
    train: Dataset
    eval: Dataset | None
    accuracy: list[dict[str, Any]]  # held-out prompts with verifiable answers (prompt-format eval sources)
    fingerprints: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


def encode_pair(tokenizer: Any, pair: Pair) -> tuple[list[int], list[int], list[int]]:
    """(prompt_ids, chosen_ids, rejected_ids): the answers' ids continue the prompt's (generation prompt included)."""
    prompt = encode_prompt(tokenizer, pair.prompt)
    chosen = tokenizer(render(tokenizer, pair.prompt + pair.chosen), add_special_tokens=False)["input_ids"]
    rejected = tokenizer(render(tokenizer, pair.prompt + pair.rejected), add_special_tokens=False)["input_ids"]
    shared = min(common_prefix_length(prompt, chosen), common_prefix_length(prompt, rejected))
    return prompt[:shared], chosen[shared:], rejected[shared:]


def _encode_fn(tokenizer: Any, label: str, max_length: int, policy: str):
    def encode(row: dict[str, Any], index: int) -> dict[str, Any]:
        pair = to_pair(row, label, index)
        if reason := skip_reason(row, pair):
            return {**EMPTY, "status": reason}
        prompt_ids, chosen_ids, rejected_ids = encode_pair(tokenizer, pair)
        status = "kept"
        if len(prompt_ids) + max(len(chosen_ids), len(rejected_ids)) > max_length:
            if policy == "drop" or len(prompt_ids) >= max_length:
                return {**EMPTY, "status": "dropped_too_long"}
            status = "truncated"  # answers cut where training cuts them, so token counts are what trains
            room = max_length - len(prompt_ids)
            chosen_ids, rejected_ids = chosen_ids[:room], rejected_ids[:room]
        return {"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected, "prompt_ids": prompt_ids,
                "chosen_ids": chosen_ids, "rejected_ids": rejected_ids, "status": status}

    return encode


def _check_formats(sources: list[LoadedSource], allowed: tuple[str, ...], section: str, stage: str) -> None:
    check_formats(sources, allowed, section, f"the {stage} stage reads {' or '.join(allowed)} rows here")


def prepare_preference_data(cfg: DataConfig, tokenizer: Any, seed: int, stage: str) -> PreferenceData:
    if cfg.streaming:
        raise UserError("data.streaming applies to pretraining; preference datasets are prepared and cached whole.")
    train = [load_source(s, default_format="preference") for s in cfg.train]
    evals = [load_source(s, default_format="preference") for s in cfg.eval]
    _check_formats(train, PAIR_FORMATS, "train", stage)
    _check_formats(evals, ("preference", "prompt"), "eval", stage)
    pair_evals = [s for s in evals if s.format == "preference"]
    fingerprints = {"train": [s.fingerprint for s in train], "eval": [s.fingerprint for s in evals],
                    "tokenizer": tokenizer_fingerprint(tokenizer), "chat_template": tokenizer.chat_template}
    key = cache_key([fingerprints, cfg.max_length, cfg.truncation, cfg.eval_fraction, seed, PREFERENCE_VERSION])


    def encoder(src: LoadedSource):
        return _encode_fn(tokenizer, src.label, cfg.max_length, cfg.truncation)

    data, stats = prepare_splits(cfg, key, seed, train, pair_evals,
                                 lambda sources, section: encode_sources(sources, encoder, section,
                                                                         "preference pairs (ties, empty or "
                                                                         "identical answers are skipped)"))
    log.info("Preference pairs: %s (max_length %d, over-long policy: %s)", counted(stats.get("train_counts")),
             cfg.max_length, cfg.truncation)
    stats.update(train_pairs=stats["splits"]["train"]["rows"])
    accuracy = [item for src in evals if src.format == "prompt" for item in graded_prompts(src.rows, src.label)]
    fingerprints["prepared"] = key
    return PreferenceData(data["train"], data.get("eval"), accuracy, fingerprints, stats)


def _prompt_rows(src: LoadedSource) -> list[dict[str, Any]]:
    """Each row's prompt, its `answer` (as text, None when absent) and every other column of a prompt row, which
    reward functions receive as keyword lists."""
    rows = []
    for index, row in enumerate(src.rows):
        if src.format == "prompt":
            answer = row.get("answer")
            extra = {key: value for key, value in row.items() if key not in ("prompt", "answer")}
            rows.append({"prompt": to_prompt(row, src.label, index),
                         "answer": None if answer is None else str(answer), **extra})
        else:
            rows.append({"prompt": to_pair(row, src.label, index).prompt, "answer": None})
    return rows


def prepare_prompt_data(cfg: DataConfig, stage: str) -> tuple[Dataset, list[dict[str, Any]], dict[str, Any]]:
    """Prompts to generate from (prompt rows, or the prompts of preference pairs), with any verifiable `answer`.

    Returns (train prompts, held-out graded prompts, fingerprints).
    """
    train = [load_source(s, default_format="prompt") for s in cfg.train]
    evals = [load_source(s, default_format="prompt") for s in cfg.eval]
    _check_formats(train, PROMPT_FORMATS, "train", stage)
    _check_formats(evals, ("prompt",), "eval", stage)
    rows = [row for src in train for row in _prompt_rows(src)]
    if not rows:
        raise UserError(f"data.train: no prompts to generate from ({', '.join(s.label for s in train)} "
                        "has no rows).")
    accuracy = [item for src in evals for item in graded_prompts(src.rows, src.label)]
    fingerprints = {"train": [s.fingerprint for s in train], "eval": [s.fingerprint for s in evals]}
    return Dataset.from_list(rows), accuracy, fingerprints
