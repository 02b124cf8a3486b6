"""One score per completion for the online stages: a weighted sum of a reward model (rescaled with its saved
statistics) and reward functions (rl/reward_functions.py), with each source's mean kept for the logs."""

from __future__ import annotations

from typing import Any

import torch

from llmforge.eval.reward_model import RewardModel, score_conversations
from llmforge.rl.core import normalise_scores
from llmforge.rl.reward_functions import RewardSource


class Scorer:
    def __init__(self, reward_model: RewardModel | None = None, stats: dict[str, float] | None = None,
                 sources: list[RewardSource] | tuple[RewardSource, ...] = (), weights: list[float] | None = None,
                 ) -> None:
        self.reward_model = reward_model
        self.stats = stats or {}
        self.sources = list(sources)
        count = int(reward_model is not None) + len(self.sources)
        self.weights = list(weights) if weights is not None else [1.0] * count

    def to(self, device: Any) -> Scorer:
        if self.reward_model is not None:
            self.reward_model.model.to(device)
        return self

    def __call__(self, prompts: list[list[dict]], completions: list[str], columns: dict[str, list[Any]] | None = None,
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        """(combined score per completion, {"rewards/<source>": its mean}). A function's None leaves that
        completion out of that source (it adds nothing there, and the source's mean skips it)."""
        parts, logged = [], {}
        if self.reward_model is not None:
            conversations = [p + [{"role": "assistant", "content": c}] for p, c in zip(prompts, completions,
                                                                                       strict=True)]
            raw = score_conversations(self.reward_model, conversations)
            logged["rewards/reward_model"] = raw.mean().item()
            parts.append(normalise_scores(raw, self.stats.get("mean"), self.stats.get("std"), None))
        for source in self.sources:
            values = source(prompts, completions, dict(columns or {}))
            given = [v for v in values if v is not None]
            logged[f"rewards/{source.label}"] = sum(given) / len(given) if given else 0.0
            parts.append(torch.tensor([0.0 if v is None else v for v in values], dtype=torch.float32))
        combined = sum(w * p for w, p in zip(self.weights, parts, strict=True))
        return combined, logged
