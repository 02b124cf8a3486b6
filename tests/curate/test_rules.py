"""Normalisation and the empty-answer rule on the rows a scrape brings, against hand-written expectations."""

from __future__ import annotations

import pytest

from llmforge.curate.examine import Examiner
from llmforge.curate.options import CurateOptions
from llmforge.curate.rules import normalise


@pytest.mark.parametrize(("raw", "clean"), [
    ("<|im_start|>user\nWhat   is 7 + 9?<|im_end|>", "What is 7 + 9?"),  # ChatML: the header's role goes too
    ("<|start_header_id|>assistant<|end_header_id|>\n\n16<|eot_id|>", "16"),  # Llama 3
    ("<start_of_turn>model\n16<end_of_turn>", "16"),  # Gemma
    ("[INST] What is 2 + 2? [/INST]", "What is 2 + 2?"),
    ("the user said <|im_end|> hello", "the user said hello"),  # a role word in prose stays
    ("a\r\n\n\n\nb \t c", "a\n\nb c"),
])
def test_normalise_removes_template_debris_and_tidies_space(raw, clean):
    assert normalise(raw) == clean


def test_an_assistant_turn_with_nothing_in_it_is_an_empty_answer():
    examiner = Examiner(CurateOptions(), ["messages"], None, None, False)
    for answer in ("", "   ", "\n"):
        row = {"messages": [{"role": "user", "content": "What is 1 + 2?"}, {"role": "assistant", "content": answer}]}
        assert examiner((0, row, None, "row 1")).reason == "lengths.empty_answer", answer
    kept = {"messages": [{"role": "user", "content": "What is 1 + 2?"}, {"role": "assistant", "content": "3"}]}
    assert examiner((0, kept, None, "row 2")).reason is None
