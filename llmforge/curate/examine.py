"""The per-row steps, in worker processes: normalise, then the filters, then what dedup and decontamination
need (the content's digest, its MinHash signature, the test rows it contains). The decisions that depend
on other rows (duplicates, groups) are taken afterwards, in order, in the main process."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmforge.curate.content import answers, content, digest, turns
from llmforge.curate.options import CurateOptions
from llmforge.curate.rules import REFUSALS, compile_patterns, normalise, quality_failure, refusal
from llmforge.curate.similar import TestIndex, signature


@dataclass
class Verdict:
    row: dict[str, Any] | None
    reason: str | None = None  # the step that removes the row
    detail: str = ""
    digest: str = ""
    signature: np.ndarray | None = None
    hits: list[int] = field(default_factory=list)
    changed: bool = False  # normalisation changed it
    characters: int = 0  # of the row's text (its turns joined), for the lengths' histograms


class Examiner:
    """Everything a worker needs, built once per process."""

    def __init__(self, options: CurateOptions, formats: list[str], model_name: str | None, tests: TestIndex | None,
                 need_signature: bool) -> None:
        self.options = options
        self.formats = formats
        self.tests = tests
        self.need_signature = need_signature
        self.patterns = None if options.refusals is None else compile_patterns(options.refusals or list(REFUSALS))
        self.filter = None
        if options.filter_function:
            from llmforge.user_code import import_function

            self.filter = import_function(options.filter_function, "curate.filter_function")
        self.tokenizer = None
        if options.lengths.max_tokens and model_name:
            from llmforge.config.schema import ModelConfig
            from llmforge.registry.models import load_tokenizer, resolve_source

            self.tokenizer = load_tokenizer(resolve_source(model_name), ModelConfig(name=model_name))

    def __call__(self, item: tuple[int, dict[str, Any] | None, str | None, str]) -> Verdict:
        source, row, error, where = item
        if row is None:
            return Verdict(None, "malformed", error or "malformed")
        fmt = self.formats[source]
        original = row
        if self.options.normalise:
            row = normalise(row)
        try:
            parts = turns(row, fmt, where, 0)
        except Exception as exc:  # the data layer's row errors: a malformed row of this format
            return Verdict(None, "malformed", str(exc).split(": ", 1)[-1] if ": " in str(exc) else str(exc))
        text = content(parts)
        reason = self._filters(row, fmt, parts, text)
        if reason:
            return Verdict(row, reason[0], reason[1], changed=row != original, characters=len(text))
        verdict = Verdict(row, digest=digest(text), changed=row != original, characters=len(text))
        if self.need_signature:
            options = self.options.near_dedup
            verdict.signature = signature(text, options.shingle, options.num_perm)
        if self.tests is not None:
            verdict.hits = sorted(self.tests.found_in(text))
        return verdict

    def _filters(self, row: dict[str, Any], fmt: str, parts: list[tuple[str, str]], text: str
                 ) -> tuple[str, str] | None:
        limits = self.options.lengths
        if limits.min_chars is not None and len(text) < limits.min_chars:
            return "lengths.min_chars", f"{len(text)} characters"
        if limits.max_chars is not None and len(text) > limits.max_chars:
            return "lengths.max_chars", f"{len(text)} characters"
        if limits.max_turn_chars is not None and any(len(t) > limits.max_turn_chars for _, t in parts):
            return "lengths.max_turn_chars", f"a turn of {max(len(t) for _, t in parts)} characters"
        replies = answers(parts)
        if fmt not in ("text", "prompt") and limits.min_answer_chars > 0 and (  # none: the data layer drops empty
                not replies or any(len(a.strip()) < limits.min_answer_chars for a in replies)):  # turns
            return "lengths.empty_answer", "an answer shorter than curate.lengths.min_answer_chars"
        if self.tokenizer is not None:
            count = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if count > limits.max_tokens:
                return "lengths.max_tokens", f"{count} tokens"
        if self.options.quality is not None and (failed := quality_failure(text, self.options.quality)):
            return failed, ""
        if self.patterns is not None and refusal(replies, self.patterns):
            return "refusals", ""
        if self.filter is not None and not self.filter(row, fmt):
            return "filter_function", ""
        return None


_EXAMINER: Examiner | None = None


def start_worker(examiner: Examiner) -> None:
    global _EXAMINER
    _EXAMINER = examiner


def examine_chunk(items: list[tuple[int, dict[str, Any] | None, str | None, str]]) -> list[Verdict]:
    assert _EXAMINER is not None
    return [_EXAMINER(item) for item in items]
