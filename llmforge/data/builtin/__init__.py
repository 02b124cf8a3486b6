"""The catalogue of built-in datasets: offline, deterministic, with held-out splits."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmforge.data.builtin import arithmetic, corpus
from llmforge.errors import UserError, did_you_mean

GENERATOR_VERSION = 2  # bump when any generator's output changes, so caches are rebuilt


class CorpusOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_documents: int = Field(20_000, ge=1)
    seed: int = 0


class ArithmeticOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_samples: int = Field(5_000, ge=1)
    max_operand: int = Field(20, ge=1, le=999)
    ops: str = Field("+-", pattern=r"^[+-]+$")
    seed: int = 0


@dataclass(frozen=True)
class Builtin:
    name: str
    format: str
    description: str
    options: type[BaseModel]
    rows: Callable[[str, Any], Iterator[dict]]
    test_size: dict[str, int]  # default row count of the test split, per option name


def _arithmetic(kind: str) -> Callable[[str, ArithmeticOptions], Iterator[dict]]:
    def rows(split: str, options: ArithmeticOptions) -> Iterator[dict]:
        return arithmetic.generate(kind, split, options.num_samples, options.max_operand, options.ops, options.seed)
    return rows


BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in (
        Builtin("tinytext", "text", "synthetic stories, arithmetic facts and chat transcripts for pretraining",
                CorpusOptions, lambda split, options: corpus.generate(split, options.num_documents, options.seed),
                {"num_documents": 500}),
        Builtin("arithmetic-sft", "messages", "arithmetic questions with the answer as an assistant turn",
                ArithmeticOptions, _arithmetic("sft"), {"num_samples": 200}),
        Builtin("arithmetic-pref", "preference", "arithmetic prompts with a correct (chosen) and near-miss "
                "(rejected) answer", ArithmeticOptions, _arithmetic("preference"), {"num_samples": 200}),
        Builtin("arithmetic-prompts", "prompt", "arithmetic prompts with the verifiable `answer`",
                ArithmeticOptions, _arithmetic("prompt"), {"num_samples": 200}),
        Builtin("arithmetic-text", "text", "arithmetic problems and answers as plain text",
                ArithmeticOptions, _arithmetic("text"), {"num_samples": 200}),
    )
}

SPLITS = ("train", "test")


def get_builtin(name: str) -> Builtin | None:
    return BUILTINS.get(name)


def resolve_options(builtin: Builtin, split: str, options: dict[str, Any], where: str) -> BaseModel:
    """Validate a built-in's options; the test split defaults to a smaller size."""
    if split not in SPLITS:
        raise UserError(f"{where}: built-in dataset '{builtin.name}' has splits {', '.join(SPLITS)}, "
                        f"not '{split}'.{did_you_mean(split, SPLITS)}")
    merged = {**(builtin.test_size if split == "test" else {}), **options}
    try:
        return builtin.options.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"'{'.'.join(map(str, e['loc']))}': {e['msg']}"
            + (did_you_mean(str(e["loc"][-1]), builtin.options.model_fields) if e["type"] == "extra_forbidden"
               else "")
            for e in exc.errors()
        )
        known = ", ".join(builtin.options.model_fields)
        raise UserError(f"{where}: bad options for built-in '{builtin.name}': {problems}. "
                        f"Options it takes: {known}.") from None


def builtin_fingerprint(builtin: Builtin, split: str, options: BaseModel) -> str:
    blob = json.dumps([builtin.name, split, options.model_dump(), GENERATOR_VERSION], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
