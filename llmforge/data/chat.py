"""Render a conversation with the model's chat template and mark which tokens carry loss.

Assistant spans come from rendering growing prefixes of the conversation: the text a
turn adds after the generation prompt is the assistant's, end-of-turn token included
(so the model learns to stop). Character spans map to tokens through the tokenizer's
offsets. This works with any template, with or without `{% generation %}` markers,
which most hub models' templates lack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmforge.data.formats import Message, to_conversation
from llmforge.data.rows import where
from llmforge.errors import UserError

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]


def render(tokenizer: Any, messages: list[Message], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def assistant_spans(tokenizer: Any, messages: list[Message], text: str) -> list[tuple[int, int]]:
    """Character spans of `text` written for assistant turns."""
    spans = []
    cursor = 0
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:index], add_generation_prompt=True) if index else ""
        through = render(tokenizer, messages[: index + 1])
        if text.startswith(through) and through.startswith(before):
            spans.append((len(before), len(through)))
            cursor = len(through)
        else:  # a template that renders earlier turns differently later on: fall back to the content itself
            start = text.find(message["content"], cursor)
            if start >= 0:
                spans.append((start, start + len(message["content"])))
                cursor = start + len(message["content"])
    return spans


def encode_conversation(tokenizer: Any, messages: list[Message], train_on: str = "assistant") -> Encoded:
    text = render(tokenizer, messages)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoded["input_ids"]
    if train_on == "all":
        return Encoded(ids, list(ids))
    spans = assistant_spans(tokenizer, messages, text)
    labels = [
        token if any(start <= begin < end for start, end in spans) else IGNORE
        for token, (begin, _) in zip(ids, encoded["offset_mapping"], strict=True)
    ]
    return Encoded(ids, labels)


def encode_text(tokenizer: Any, text: str) -> Encoded:
    """Plain text rows train on every token and end with EOS."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return Encoded(ids, list(ids))


def encode_row(tokenizer: Any, row: dict[str, Any], fmt: str, label: str, index: int,
               train_on: str = "assistant") -> Encoded | None:
    """A text or conversation row as tokens and labels; None when it has nothing to learn."""
    if fmt == "text":
        text = row.get("text")
        if not isinstance(text, str):
            raise UserError(f"{where(label, index)}: 'text' must be a string, got {type(text).__name__}.")
        return encode_text(tokenizer, text) if text.strip() else None
    messages = to_conversation(row, fmt, label, index)
    return encode_conversation(tokenizer, messages, train_on) if messages else None


def encode_prompt(tokenizer: Any, messages: list[Message]) -> list[int]:
    """Token ids to generate from: the conversation so far plus the assistant generation prompt."""
    return tokenizer(render(tokenizer, messages, add_generation_prompt=True), add_special_tokens=False)["input_ids"]
