"""Grading generated answers: the first integer of a completion, the last number of a GSM8K-style answer."""

from __future__ import annotations

from llmforge.eval.answers import first_integer, is_correct, last_number


def test_extract_answer():
    assert first_integer(" 42<|im_end|>") == "42"
    assert first_integer("The answer is -3.") == "-3"
    assert first_integer("no idea") is None


def test_is_correct_and_last_number():
    assert is_correct("17<|eot_id|>", 17) and is_correct("It is 17.", "17") and not is_correct("7 then 17", 17)
    assert last_number("so 1,234.5 apples.") == "1234.5" and last_number("none") is None
