"""Grading a generated answer against a known one: the rule exact-match accuracy and the verifiable rewards use.

The answer is the first integer in the completion ("17", "It is 17.", "17<|eot_id|>..."): models trained to
answer with a number say it first, and a grader that looked further would reward a right number said after
a wrong one. GSM8K-style answers ("... #### 42") are graded by their last number (`last_number`).
"""

from __future__ import annotations

import re

INTEGER = re.compile(r"-?\d+")
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def first_integer(completion: str) -> str | None:
    match = INTEGER.search(completion)
    return match.group(0) if match else None


def is_correct(completion: str, answer: object) -> bool:
    """Whether a completion's first integer is the answer (given as text or a number)."""
    return first_integer(completion) == str(answer)


def last_number(text: str) -> str | None:
    found = NUMBER.findall(text)
    return found[-1].replace(",", "").rstrip(".") if found else None
