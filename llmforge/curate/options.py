"""The `curate:` section of a recipe: which steps run, in the order they run, and their settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmforge.config.schema import DataSource, Section
from llmforge.curate.rules import REFUSALS, Quality


class Lengths(Section):
    """Length limits; null = no limit. Characters count the whole row; tokens (with the recipe's model's
    tokenizer) count the longest part of it; answers count each assistant turn."""

    min_chars: int | None = Field(None, ge=0, description="row content at least this many characters")
    max_chars: int | None = Field(None, ge=1, description="row content at most this many characters")
    max_tokens: int | None = Field(None, ge=1, description="row content at most this many tokens (model.name's "
                                   "tokenizer; e.g. data.max_length of the stage that trains on it)")
    min_answer_chars: int = Field(1, ge=0, description="every answer at least this many characters (1: no empty "
                                  "answers)")
    max_turn_chars: int | None = Field(None, ge=1, description="no single turn longer than this")


class NearDuplicateOptions(Section):
    enabled: bool = Field(True, description="remove near-duplicates (MinHash LSH, datasketch)")
    threshold: float = Field(0.8, gt=0.0, le=1.0, description="Jaccard similarity that makes two rows near "
                             "copies")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations (more: finer estimates, slower)")
    shingle: int = Field(5, ge=1, le=64, description="characters per shingle")


class Decontamination(Section):
    against: list[DataSource] = Field(default_factory=list, description="eval/test sources whose rows must not "
                                      "appear in training data")
    ngram: int = Field(13, ge=1, le=64, description="words per n-gram (13, as the GPT-3 and Llama reports)")


class Split(Section):
    validation: float = Field(0.0, ge=0.0, lt=1.0, description="share of rows in validation/")
    test: float = Field(0.0, ge=0.0, lt=1.0, description="share of rows in test/")
    salt: str = Field("llmforge", description="change it to draw a different split of the same rows")


class CurateOptions(Section):
    normalise: bool = Field(True, description="Unicode NFC, stray chat-template tokens removed, whitespace tidied")
    lengths: Lengths = Field(default_factory=Lengths)
    quality: Quality | None = Field(None, description="heuristic quality rules (set {} for the defaults)")
    refusals: list[str] | None = Field(None, description="remove rows whose answer matches one of these phrases "
                                       f"('re:' for a regex); [] for the built-in list ({len(REFUSALS)} phrases)")
    filter_function: str | None = Field(None, description="your own `file.py:function` or `module:function`, "
                                        "called with each row (a dict) and its format: return False to drop it")
    exact_dedup: bool = Field(True, description="remove rows whose content repeats an earlier row's (case and "
                              "whitespace ignored)")
    near_dedup: NearDuplicateOptions = Field(default_factory=NearDuplicateOptions)
    decontaminate: Decontamination = Field(default_factory=Decontamination)
    split: Split = Field(default_factory=Split)
    on_error: Literal["skip", "fail"] = Field("skip", description="a malformed row: skip it (listed in the "
                                              "manifest with its row number) or stop")
    num_proc: int = Field(1, ge=1, le=256, description="worker processes for the per-row steps")
    shard_rows: int = Field(100_000, ge=1, description="rows per output parquet file")
    examples: int = Field(3, ge=0, le=100, description="removed rows kept as examples per step in the manifest")
