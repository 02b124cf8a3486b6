"""Win-rate of one model against another on held-out prompts, judged by a reward model.

Both models answer each prompt greedily; the judge (when there is one) scores both
answers in the same context. Where prompts carry a verifiable `answer`, both exact-match
accuracies come too.
"""

from __future__ import annotations

from typing import Any

import torch

from llmforge.eval.answers import is_correct
from llmforge.eval.reward_model import load_reward_model, win_rate
from llmforge.inference import generate, load_for_inference


def _answers(model_name: str, prompts: list[list[dict]], max_new_tokens: int) -> list[str]:
    loaded = load_for_inference(model_name)
    answers = generate(loaded, prompts, max_new_tokens=max_new_tokens)
    del loaded
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return answers


def paired_gain(ours: list[bool], theirs: list[bool]) -> tuple[float, float]:
    """(accuracy gain, its standard error) of two models graded on the same items: the mean and the standard
    error of the per-item differences (each -1, 0 or 1), which is far smaller than either accuracy's own error
    when the two models mostly agree."""
    diffs = [int(a) - int(b) for a, b in zip(ours, theirs, strict=True)]
    n = len(diffs)
    mean = sum(diffs) / n
    variance = sum((d - mean) ** 2 for d in diffs) / (n - 1) if n > 1 else 0.0
    return mean, (variance / n) ** 0.5


def compare(model_name: str, baseline_name: str, judge_name: str | None, items: list[dict[str, Any]],
            max_new_tokens: int = 64) -> dict[str, Any]:
    """items: {"messages": prompt, "answer": str | None}. Returns win_rate (ties half) and rewards."""
    prompts = [item["messages"] for item in items]
    ours, theirs = _answers(model_name, prompts, max_new_tokens), _answers(baseline_name, prompts, max_new_tokens)
    return judge_answers(judge_name, items, ours, theirs)


def judge_answers(judge_name: str | None, items: list[dict[str, Any]], ours: list[str], theirs: list[str],
                  ) -> dict[str, Any]:
    """Both models' answers to the same items, set side by side: win-rate by the judge, exact match, samples."""
    prompts = [item["messages"] for item in items]
    result: dict[str, Any] = (win_rate(load_reward_model(judge_name), prompts, ours, theirs) if judge_name
                              else {"prompts": len(prompts)})
    graded = [(item["answer"], a, b) for item, a, b in zip(items, ours, theirs, strict=True)
              if item.get("answer") is not None]
    if graded:
        ours_right = [is_correct(a, truth) for truth, a, _ in graded]
        theirs_right = [is_correct(b, truth) for truth, _, b in graded]
        result["accuracy"] = sum(ours_right) / len(graded)
        result["baseline_accuracy"] = sum(theirs_right) / len(graded)
        result["gain"], result["gain_se"] = paired_gain(ours_right, theirs_right)
    result["samples"] = [{"prompt": item["messages"][-1]["content"], "answer": a, "baseline": b,
                          "expected": item.get("answer")}
                         for item, a, b in list(zip(items, ours, theirs, strict=True))[:5]]
    return result
