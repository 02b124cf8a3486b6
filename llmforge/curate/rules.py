"""Row-level cleaning: normalisation, length limits, heuristic quality rules and refusal patterns.

The quality rules are the kind used to clean web text for Gopher (Rae et al. 2021), C4 and FineWeb: each
is a measurable property of a text with a bound, and a row fails on the first rule it breaks (the manifest
counts rows per rule). Defaults follow Gopher's where they carry over to instruction data; rules that only
make sense for long documents apply from `min_words_for_document_rules` words on.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Any

from pydantic import Field

from llmforge.config.schema import Section
from llmforge.curate.content import words

STOP_WORDS = frozenset(["the", "be", "to", "of", "and", "that", "have", "with", "a", "an", "is", "it", "in", "for", "on", "as", "this", "was", "are"])
# stray chat-template control tokens: a conversation rendered into a field by another tool; a turn's header
# (ChatML's `<|im_start|>user`, Llama 3's `<|start_header_id|>user<|end_header_id|>`, Gemma's
# `<start_of_turn>model`) goes with its role name
CONTROL_TOKENS = re.compile(r"(?:<\|im_start\|>|<start_of_turn>)(?:system|user|assistant|model)\b\n?|"
                            r"<\|start_header_id\|>(?:system|user|assistant)<\|end_header_id\|>\n*|"
                            r"<\|(?:im_start|im_end|eot_id|start_header_id|end_header_id|begin_of_text|"
                            r"end_of_text|endoftext|system|user|assistant)\|>|<end_of_turn>|<start_of_turn>|"
                            r"\[/?INST\]|<</?SYS>>")
REFUSALS = ("I'm sorry, but I can't", "I am sorry, but I cannot", "I cannot help with", "I can't help with",
            "I can't assist with", "I cannot assist with", "As an AI language model", "I'm not able to help",
            "I am unable to", "I'm unable to")


class Quality(Section):
    """Heuristic quality bounds (Gopher/C4/FineWeb-style); a bound of null switches its rule off."""

    min_words_for_document_rules: int = Field(50, ge=0, description="the document rules below apply from this "
                                              "many words on (short chat turns are not documents)")
    min_mean_word_length: float | None = Field(3.0, description="mean word length at least")
    max_mean_word_length: float | None = Field(10.0, description="mean word length at most")
    max_symbol_ratio: float | None = Field(0.1, description="'#' and '...' per word at most")
    max_digit_ratio: float | None = Field(0.3, description="share of characters that are digits at most")
    min_alpha_word_ratio: float | None = Field(0.8, description="share of words with a letter at least")
    min_stop_words: int | None = Field(2, description="distinct English stop words at least (document rules)")
    max_duplicate_line_ratio: float | None = Field(0.3, description="share of lines that repeat an earlier "
                                                   "line at most (document rules)")
    max_top_ngram_ratio: float | None = Field(0.2, description="share of characters covered by the most frequent "
                                              "word 2-gram at most (document rules)")


def normalise(value: Any) -> Any:
    """Every string in a row: Unicode NFC, stray template control tokens removed, spaces and blank lines
    tidied; structure kept."""
    if isinstance(value, str):
        text = CONTROL_TOKENS.sub("", unicodedata.normalize("NFC", value)).replace("\r\n", "\n")
        text = re.sub(r"[ \t\u00a0]+", " ", text)
        text = re.sub(r" ?\n ?", "\n", text)
        return re.sub(r"\n{3,}", "\n\n", text).strip()
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    return value


def quality_failure(text: str, q: Quality) -> str | None:
    """The first quality rule `text` breaks, or None."""
    tokens = words(text)
    if not tokens:
        return "quality.no_words"
    mean = sum(len(w) for w in tokens) / len(tokens)
    if q.min_mean_word_length is not None and mean < q.min_mean_word_length:
        return "quality.mean_word_length"
    if q.max_mean_word_length is not None and mean > q.max_mean_word_length:
        return "quality.mean_word_length"
    if q.max_symbol_ratio is not None and (text.count("#") + text.count("...")) / len(tokens) > q.max_symbol_ratio:
        return "quality.symbol_ratio"
    if q.max_digit_ratio is not None and sum(c.isdigit() for c in text) / max(1, len(text)) > q.max_digit_ratio:
        return "quality.digit_ratio"
    if q.min_alpha_word_ratio is not None and \
            sum(any(c.isalpha() for c in w) for w in tokens) / len(tokens) < q.min_alpha_word_ratio:
        return "quality.alpha_word_ratio"
    if len(tokens) < q.min_words_for_document_rules:
        return None
    if q.min_stop_words is not None and len(STOP_WORDS.intersection(tokens)) < q.min_stop_words:
        return "quality.stop_words"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if q.max_duplicate_line_ratio is not None and lines and \
            (len(lines) - len(set(lines))) / len(lines) > q.max_duplicate_line_ratio:
        return "quality.duplicate_lines"
    if q.max_top_ngram_ratio is not None and len(tokens) > 2:
        (pair, count), = Counter(zip(tokens, tokens[1:], strict=False)).most_common(1)
        if count > 1 and count * (len(pair[0]) + len(pair[1])) / max(1, sum(len(w) for w in tokens)) \
                > q.max_top_ngram_ratio:
            return "quality.top_ngram"
    return None


def refusal(answers: list[str], patterns: list[re.Pattern[str]]) -> bool:
    return any(p.search(a) for a in answers for p in patterns)


def compile_patterns(patterns: list[str]) -> list[re.Pattern[str]]:
    """Plain phrases (matched case-insensitively anywhere); a pattern starting with 're:' is a regex."""
    return [re.compile(p[3:]) if p.startswith("re:") else re.compile(re.escape(p), re.IGNORECASE)
            for p in patterns]
