"""Exact-match accuracy: greedy answers to prompts with a known answer, graded by eval/answers.py."""

from __future__ import annotations

from typing import Any

from llmforge.eval.answers import is_correct
from llmforge.inference import generate
from llmforge.registry import LoadedModel


def exact_match(loaded: LoadedModel, items: list[dict[str, Any]], max_new_tokens: int = 12) -> dict[str, Any]:
    """Share of prompts whose first integer in the greedy completion equals `answer`."""
    completions = generate(loaded, [item["messages"] for item in items], max_new_tokens=max_new_tokens)
    correct = [is_correct(text, item["answer"]) for text, item in zip(completions, items, strict=True)]
    samples = [{"prompt": item["messages"][-1]["content"], "completion": text, "answer": item["answer"]}
               for item, text in list(zip(items, completions, strict=True))[:5]]
    return {"accuracy": sum(correct) / len(correct), "samples": samples}
