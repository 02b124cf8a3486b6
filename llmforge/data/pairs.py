"""Preference rows -> (prompt, chosen, rejected) conversations, whatever shape they came in.

Real preference datasets come in several shapes: an explicit `prompt` beside `chosen`
and `rejected` (strings or message lists, sometimes with the prompt repeated inside
them), or only `chosen` and `rejected`, full conversations or Anthropic HH transcripts
("\\n\\nHuman: ... \\n\\nAssistant: ...") that share their prompt as a prefix. All become
one shape, so reward modelling, DPO and GRPO template and tokenize pairs the same way.

Pairs that teach nothing (ties, empty answers, identical chosen and rejected) are
skipped and counted; rows with a broken structure are errors naming the row.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmforge.data.formats import Message, RowError, parse_turns, row_error

HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")
HH_ROLES = {"Human": "user", "Assistant": "assistant"}
SKIP_REASONS = ("tie", "empty_answer", "identical")


@dataclass
class Pair:
    prompt: list[Message]
    chosen: list[Message]  # the turns after the prompt: what the preferred answer says
    rejected: list[Message]


def _fail(label: str, index: int, problem: str) -> RowError:
    return row_error(label, index, problem, "preference")


def parse_hh(text: str) -> list[Message] | None:
    """An Anthropic HH transcript as messages; None when the text has no Human/Assistant markers."""
    markers = list(HH_TURN.finditer(text))
    if not markers or not any(m.group(1) == "Human" for m in markers):
        return None
    messages = []
    for marker, following in zip(markers, [*markers[1:], None], strict=True):
        end = following.start() if following else len(text)
        messages.append({"role": HH_ROLES[marker.group(1)], "content": text[marker.end():end].strip()})
    return messages


def _messages(value: Any, field: str, role: str, label: str, index: int) -> list[Message]:
    """A string (plain or an HH transcript) or a message list as messages."""
    if isinstance(value, str):
        return parse_hh(value) or [{"role": role, "content": value}]
    if isinstance(value, dict) and "content" in value:
        value = [value]
    if isinstance(value, list):
        return parse_turns(value, "role", "content", field, label, index, "preference")
    problem = "missing field" if value is None else f"must be a string or a list of messages, got {type(value).__name__}"
    raise _fail(label, index, f"'{field}' {problem}")


def common_prefix_length(a: Sequence[Any], b: Sequence[Any]) -> int:
    """How many leading items (messages, token ids, characters) two sequences share."""
    count = 0
    while count < min(len(a), len(b)) and a[count] == b[count]:
        count += 1
    return count


def _split_plain(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Plain texts sharing a prompt: cut at the last whitespace of their common prefix."""
    common = common_prefix_length(chosen, rejected)
    cut = max(chosen.rfind(" ", 0, common), chosen.rfind("\n", 0, common)) + 1 if common < len(chosen) else common
    return chosen[:cut], chosen[cut:], rejected[cut:]


def _implicit(row: dict[str, Any], label: str, index: int) -> tuple[list[Message], list[Message], list[Message]]:
    chosen, rejected = row.get("chosen"), row.get("rejected")
    if isinstance(chosen, str) and isinstance(rejected, str) and parse_hh(chosen) is None:
        prompt, chosen_text, rejected_text = _split_plain(chosen, rejected)
        if not prompt.strip():
            raise _fail(label, index, "'chosen' and 'rejected' share no prompt text; give the prompt in a "
                        "'prompt' column")
        return ([{"role": "user", "content": prompt.strip()}], [{"role": "assistant", "content": chosen_text}],
                [{"role": "assistant", "content": rejected_text}])
    chosen_messages = _messages(chosen, "chosen", "assistant", label, index)
    rejected_messages = _messages(rejected, "rejected", "assistant", label, index)
    shared = common_prefix_length(chosen_messages, rejected_messages)
    if shared == len(chosen_messages) == len(rejected_messages):  # identical: keep it whole, reported as such
        shared -= 1
    while shared > 0 and chosen_messages[shared - 1]["role"] == "assistant":  # answers start after a user turn
        shared -= 1
    if shared == 0:
        raise _fail(label, index, "'chosen' and 'rejected' do not start with a shared prompt turn; give the "
                    "prompt in a 'prompt' column")
    return chosen_messages[:shared], chosen_messages[shared:], rejected_messages[shared:]


def _without_prompt(messages: list[Message], prompt: list[Message]) -> list[Message]:
    """Answers that repeat the prompt's turns first (as UltraFeedback's do) keep only what follows."""
    if len(messages) > len(prompt) and messages[:len(prompt)] == prompt:
        return messages[len(prompt):]
    return messages


def check_scores(row: dict[str, Any], label: str, index: int) -> None:
    """Scores, when given, are finite numbers: a NaN score would compare unequal to everything and pass as
    a preference."""
    for field in ("score_chosen", "score_rejected"):
        value = row.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _fail(label, index, f"'{field}' must be a finite number, got {value!r}")


def skip_reason(row: dict[str, Any], pair: Pair) -> str | None:
    """Why a well-formed pair teaches nothing, if it does not."""
    scores = row.get("score_chosen"), row.get("score_rejected")
    if row.get("tie") is True or (None not in scores and scores[0] == scores[1]):
        return "tie"
    for answer in (pair.chosen, pair.rejected):
        if not any(m["content"].strip() for m in answer if m["role"] == "assistant"):
            return "empty_answer"
    if [m["content"].strip() for m in pair.chosen] == [m["content"].strip() for m in pair.rejected]:
        return "identical"
    return None


def to_pair(row: dict[str, Any], label: str, index: int) -> Pair:
    """The row as a pair; a structural problem is a RowError naming the row and field."""
    for field in ("chosen", "rejected"):
        if row.get(field) is None:
            raise _fail(label, index, f"'{field}' missing field")
    check_scores(row, label, index)
    if row.get("prompt") is not None:
        prompt = _messages(row["prompt"], "prompt", "user", label, index)
        chosen = _without_prompt(_messages(row["chosen"], "chosen", "assistant", label, index), prompt)
        rejected = _without_prompt(_messages(row["rejected"], "rejected", "assistant", label, index), prompt)
    else:
        prompt, chosen, rejected = _implicit(row, label, index)
    for field, answer in (("chosen", chosen), ("rejected", rejected)):
        if not any(m["role"] == "assistant" for m in answer):
            raise _fail(label, index, f"'{field}' has no assistant turn after the prompt")
    return Pair(prompt, chosen, rejected)
