"""Writes the data of the shipped lm-eval tasks from the built-in generators (`python -m llmforge.eval.benchmarks.build`).

The files are shipped so the tasks are ordinary lm-eval task folders (YAML + local jsonl) that run with no
hub; tests/eval/test_harness.py checks they still equal what this writes, so they never drift from the
built-in data they are drawn from. Every row is held out from training: the arithmetic rows are test-split
problems (split by a hash of the problem), the story rows test-split documents.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

from llmforge.data.builtin import arithmetic, corpus

HERE = Path(__file__).parent
STORIES = 60
CHOICE_OPERAND = 20  # beyond the SFT recipes' single digits: what pretraining's arithmetic facts taught


def arithmetic_rows() -> Iterator[dict]:
    """The rows `arithmetic-prompts` (split test, max_operand 9) holds, as the pipeline's held-out prompts."""
    for row in arithmetic.generate("prompt", "test", 200, 9, "+-", 0):
        yield {"question": row["prompt"][0]["content"], "answer": row["answer"]}


def choice_rows() -> Iterator[dict]:
    """Every held-out problem up to 20, written as pretraining's facts are ("7 + 5 ="), with its answer and
    three near misses in a seeded order."""
    rng = random.Random(0)
    for problem in arithmetic.problems("test", CHOICE_OPERAND, "+-"):
        wrong: list[int] = []
        while len(wrong) < 3:
            if (miss := arithmetic.near_miss(problem, rng)) not in wrong:
                wrong.append(miss)
        choices = [problem.answer, *wrong]
        rng.shuffle(choices)
        yield {"question": f"{problem.a} {problem.op} {problem.b} =", "choices": [str(c) for c in choices],
               "label": choices.index(problem.answer)}


def story_rows() -> Iterator[dict]:
    """Held-out stories of the built-in corpus: two sentences as context, the third (without its full stop)
    as the continuation to write."""
    index = 0
    found = 0
    while found < STORIES:
        text = corpus.document(0, "test", index)
        index += 1
        sentences = text.split(". ")
        if not text.startswith("One ") or len(sentences) < 4:
            continue
        found += 1
        yield {"context": ". ".join(sentences[:2]) + ".", "continuation": sentences[2].rstrip(".")}


FILES = {"arithmetic.jsonl": arithmetic_rows, "arithmetic_choice.jsonl": choice_rows, "story.jsonl": story_rows}


def render(name: str) -> str:
    return "".join(json.dumps(row) + "\n" for row in FILES[name]())


if __name__ == "__main__":
    for file in FILES:
        (HERE / file).write_text(render(file))
        print(f"wrote {HERE / file}")
