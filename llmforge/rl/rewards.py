"""Built-in verifiable reward functions, named in recipes (`grpo.reward_functions`).

Each takes TRL's reward-function arguments (the completions plus any dataset column,
e.g. `answer`, as keyword lists) and returns one float per completion.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch

from llmforge.data.builtin.arithmetic import is_correct
from llmforge.eval.reward import RewardModel, score_conversations
from llmforge.rl.core import normalise_scores


def completion_text(completion: Any) -> str:
    """A completion as text, whether plain or a list of chat messages."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return str(completion)


def arithmetic(completions: list[Any], answer: list[str | None], **_: Any) -> list[float]:
    """1.0 when the completion's first integer is the answer, else 0.0."""
    return [float(is_correct(completion_text(c), a)) for c, a in zip(completions, answer, strict=True)]


NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def _number(text: str) -> str | None:
    found = NUMBER.findall(text)
    return found[-1].replace(",", "").rstrip(".") if found else None


def final_number(completions: list[Any], answer: list[str | None], **_: Any) -> list[float]:
    """1.0 when the completion's last number is the answer's (GSM8K style: the answer may end '#### 42')."""
    truths = [_number(str(a).split("####")[-1]) for a in answer]
    return [float(t is not None and _number(completion_text(c)) == t) for c, t in zip(completions, truths,
                                                                                       strict=True)]


REWARD_FUNCTIONS: dict[str, Callable[..., list[float]]] = {"arithmetic": arithmetic, "final_number": final_number}
NEEDS_COLUMN = {"arithmetic": "answer", "final_number": "answer"}


class Scorer:
    """One score per completion: a weighted sum of a reward model (rescaled with its saved statistics)
    and verifiable functions. Returns the combined score and each source's raw mean for the logs."""

    def __init__(self, reward_model: RewardModel | None = None, stats: dict[str, float] | None = None,
                 functions: tuple[str, ...] = (), weights: list[float] | None = None) -> None:
        self.reward_model = reward_model
        self.stats = stats or {}
        self.functions = functions
        count = int(reward_model is not None) + len(functions)
        self.weights = list(weights) if weights is not None else [1.0] * count

    def to(self, device: Any) -> Scorer:
        if self.reward_model is not None:
            self.reward_model.model.to(device)
        return self

    def __call__(self, prompts: list[list[dict]], completions: list[str], answers: list[str | None],
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        parts, logged = [], {}
        if self.reward_model is not None:
            conversations = [p + [{"role": "assistant", "content": c}] for p, c in zip(prompts, completions,
                                                                                       strict=True)]
            raw = score_conversations(self.reward_model, conversations)
            logged["rewards/reward_model"] = raw.mean().item()
            parts.append(normalise_scores(raw, self.stats.get("mean"), self.stats.get("std"), None))
        for name in self.functions:
            values = torch.tensor(REWARD_FUNCTIONS[name](completions, answer=answers), dtype=torch.float32)
            logged[f"rewards/{name}"] = values.mean().item()
            parts.append(values)
        combined = sum(w * p for w, p in zip(self.weights, parts, strict=True))
        return combined, logged
