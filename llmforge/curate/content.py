"""What a row says, whatever its format: the texts that dedup, decontamination and the filters look at.

A row's *content* is what makes two rows the same example: a text row's text; a conversation's turns
(prompt and answer); a preference pair's prompt, chosen and rejected answers; a prompt row's prompt.
Its *answers* are the assistant turns (what a refusal or an empty-answer filter reads).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any

from llmforge.data.formats import to_conversation

_SPACE = re.compile(r"\s+")


def _messages(value: Any) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}]
    return [m for m in value or [] if isinstance(m, dict)]


def turns(row: dict[str, Any], fmt: str, label: str = "row", index: int = 0) -> list[tuple[str, str]]:
    """(role, text) of every part of the row, in order; raises the data layer's row errors on malformed rows."""
    if fmt == "text":
        text = row.get("text")
        if not isinstance(text, str):
            raise ValueError("'text' is missing or not a string")
        return [("text", text)]
    if fmt == "preference":
        prompt = row.get("prompt")
        parts = [("user", prompt)] if isinstance(prompt, str) else [
            (m.get("role", "user"), m.get("content", "")) for m in _messages(prompt)]
        for key in ("chosen", "rejected"):
            if row.get(key) is None:
                raise ValueError(f"'{key}' is missing")
            parts += [(key, m.get("content", "")) for m in _messages(row[key]) if m.get("role", "assistant")
                      == "assistant"]
        return [(role, text if isinstance(text, str) else str(text)) for role, text in parts]
    if fmt == "prompt":
        prompt = row.get("prompt")
        if isinstance(prompt, str):
            return [("user", prompt)]
        return [(m.get("role", "user"), m.get("content", "")) for m in _messages(prompt)]
    conversation = to_conversation(row, fmt, label, index) or []
    return [(m["role"], m["content"]) for m in conversation]


def content(parts: list[tuple[str, str]]) -> str:
    return "\n".join(text for _, text in parts)


def answers(parts: list[tuple[str, str]]) -> list[str]:
    return [text for role, text in parts if role in ("assistant", "chosen")]


def canonical(text: str) -> str:
    """The text as exact dedup compares it: NFC, case-folded, whitespace runs as one space."""
    return _SPACE.sub(" ", unicodedata.normalize("NFC", text).casefold()).strip()


def digest(text: str) -> str:
    return hashlib.sha256(canonical(text).encode()).hexdigest()


WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    return WORD.findall(canonical(text))


TERM = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def terms(text: str) -> list[str]:
    """Words and each symbol on its own: what n-gram overlap compares ('7 - 1' and '7 + 1' differ)."""
    return TERM.findall(canonical(text))
