"""Row formats -> one conversation shape: a list of {"role", "content"} messages.

alpaca, sharegpt and messages rows all become conversations, so templating and loss
masking are written once. A structural problem (missing field, wrong type, unknown
role) is a user error naming the row and field; a row whose answer is empty is
skipped and counted, as real datasets have a few.
"""

from __future__ import annotations

from typing import Any

from llmforge.data.rows import where
from llmforge.errors import UserError

Message = dict[str, str]

ROLE_ALIASES = {
    "system": "system",
    "user": "user", "human": "user", "prompter": "user",
    "assistant": "assistant", "gpt": "assistant", "chatgpt": "assistant", "bard": "assistant",
    "model": "assistant", "bot": "assistant",
    "tool": "tool", "function": "tool", "observation": "tool", "ipython": "tool",
}
REQUIRED = {"alpaca": ("instruction", "output"), "sharegpt": ("conversations",), "messages": ("messages",),
            "text": ("text",), "prompt": ("prompt",),
            "preference": ("chosen", "rejected")}


class RowError(UserError):
    pass


def row_error(label: str, index: int, problem: str, fmt: str) -> RowError:
    needed = " and ".join(f"'{f}'" for f in REQUIRED[fmt])
    return RowError(f"{where(label, index)}: {problem}. '{fmt}' rows need {needed}; if your file names them "
                    "differently, map them with columns: {expected: yours}.")


def _text(value: Any, field: str, label: str, index: int, fmt: str, optional: bool = False) -> str:
    if value is None and optional:
        return ""
    if isinstance(value, list) and all(isinstance(p, dict) for p in value):  # OpenAI content parts
        value = "".join(p.get("text", "") for p in value if p.get("type", "text") == "text")
    if not isinstance(value, str):
        problem = "missing field" if value is None else f"must be text, got {type(value).__name__}"
        raise row_error(label, index, f"'{field}' {problem}", fmt)
    return value


def parse_turns(items: Any, role_key: str, content_key: str, field: str, label: str, index: int, fmt: str,
           ) -> list[Message]:
    if not isinstance(items, list) or not items:
        raise row_error(label, index, f"'{field}' must be a non-empty list of turns", fmt)
    messages = []
    for position, turn in enumerate(items):
        if not isinstance(turn, dict):
            raise row_error(label, index, f"'{field}[{position}]' must be a mapping, got {type(turn).__name__}", fmt)
        keys = (role_key, content_key) if role_key in turn else ("role", "content") if "role" in turn else (
            "from", "value")
        raw_role = turn.get(keys[0])
        role = ROLE_ALIASES.get(str(raw_role).lower()) if raw_role is not None else None
        if role is None:
            raise row_error(label, index, f"'{field}[{position}].{keys[0]}' is {raw_role!r}, not a known role "
                        f"({', '.join(sorted(set(ROLE_ALIASES)))})", fmt)
        content = _text(turn.get(keys[1]), f"{field}[{position}].{keys[1]}", label, index, fmt)
        messages.append({"role": role, "content": content})
    return messages


def to_conversation(row: dict[str, Any], fmt: str, label: str, index: int) -> list[Message] | None:
    """The row as a conversation, or None when it has nothing to learn (an empty answer)."""
    if fmt == "alpaca":
        messages = []
        if system := _text(row.get("system"), "system", label, index, fmt, optional=True):
            messages.append({"role": "system", "content": system})
        for turn, pair in enumerate(row.get("history") or []):
            if not (isinstance(pair, list | tuple) and len(pair) == 2):
                raise row_error(label, index, f"'history[{turn}]' must be a [question, answer] pair", fmt)
            messages += [{"role": "user", "content": _text(pair[0], f"history[{turn}][0]", label, index, fmt)},
                         {"role": "assistant", "content": _text(pair[1], f"history[{turn}][1]", label, index, fmt)}]
        instruction = _text(row.get("instruction"), "instruction", label, index, fmt)
        extra = _text(row.get("input"), "input", label, index, fmt, optional=True)
        messages.append({"role": "user", "content": f"{instruction}\n\n{extra}" if extra else instruction})
        messages.append({"role": "assistant", "content": _text(row.get("output"), "output", label, index, fmt)})
    elif fmt == "sharegpt":
        messages = parse_turns(row.get("conversations"), "from", "value", "conversations", label, index, fmt)
        if (system := _text(row.get("system"), "system", label, index, fmt, optional=True)) and \
                messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": system})
    elif fmt == "messages":
        messages = parse_turns(row.get("messages"), "role", "content", "messages", label, index, fmt)
    else:
        raise UserError(f"{label}: format '{fmt}' is not a conversation format.")
    answers = [m for m in messages if m["role"] == "assistant"]
    if not answers:
        raise row_error(label, index, "the conversation has no assistant turn to learn from", fmt)
    if not any(m["content"].strip() for m in answers):
        return None
    return messages


def to_prompt(row: dict[str, Any], label: str, index: int) -> list[Message]:
    """A `prompt` row (a string or a message list) as the messages to generate from."""
    prompt = row.get("prompt")
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return parse_turns(prompt, "role", "content", "prompt", label, index, "prompt")


def graded_prompts(rows: Any, label: str) -> list[dict[str, Any]]:
    """`prompt` rows with their verifiable `answer`, for exact-match accuracy."""
    items = []
    for index, row in enumerate(rows):
        if row.get("answer") is None:
            raise UserError(f"{where(label, index)}: prompt rows need an 'answer' to grade generations against "
                            "(map it with columns: {answer: yours}).")
        items.append({"messages": to_prompt(row, label, index), "answer": str(row["answer"])})
    return items
