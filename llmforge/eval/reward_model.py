"""Score text with a reward model: pair accuracy, reward statistics, win-rates.

A reward model is any model name the registry resolves (an `rm` run, an HF folder
of a sequence-classification model with one label). The score is read at the last
token that is not padding; `rm` runs save the mean and std of their scores in
`reward_stats.json` beside the weights so later stages (PPO) can normalise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification

from llmforge.config.schema import ModelConfig
from llmforge.data.chat import render
from llmforge.data.formats import Message
from llmforge.errors import UserError
from llmforge.registry import ModelSource, load_model

STATS_FILE = "reward_stats.json"


@dataclass
class RewardModel:
    model: Any
    tokenizer: Any
    source: ModelSource | None = None


def load_reward_model(name: str, device: str | None = None, like: ModelConfig | None = None) -> RewardModel:
    """A frozen reward model in eval mode; `like` lends it a run's model settings (dtype, trust)."""
    settings = like.for_other(name) if like is not None else ModelConfig(name=name)
    loaded = load_model(settings, AutoModelForSequenceClassification, num_labels=1)
    if loaded.model.config.num_labels != 1:
        raise UserError(f"'{name}' is a classifier with {loaded.model.config.num_labels} labels, not a reward "
                        "model (one score per sequence). Train one with stage: rm.")
    if loaded.model.config.pad_token_id is None:
        loaded.model.config.pad_token_id = loaded.tokenizer.pad_token_id
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    loaded.model.to(device).eval().requires_grad_(False)
    return RewardModel(loaded.model, loaded.tokenizer, loaded.source)


def saved_statistics(rm: RewardModel) -> dict[str, float]:
    """The mean/std of its scores an rm run saved beside its weights ({} when there are none)."""
    path = Path(rm.source.location) / STATS_FILE if rm.source is not None else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else {}


def stats_of(scores: torch.Tensor) -> dict[str, float]:
    return {"mean": scores.mean().item(), "std": scores.std(unbiased=False).item(), "count": scores.numel()}


SCORED_TOKENS = 8192  # tokens per scoring forward: memory bounded by tokens, not by rows of any length


@torch.no_grad()
def score_ids(model: Any, pad_id: int, sequences: list[list[int]], batch_size: int = 32) -> torch.Tensor:
    """One score per token sequence (right-padded; the head reads the last non-pad token), in batches of at
    most `batch_size` rows and SCORED_TOKENS tokens."""
    scores, start = [], 0
    while start < len(sequences):
        rows = batch_size
        while rows > 1 and rows * max(len(s) for s in sequences[start:start + rows]) > SCORED_TOKENS:
            rows //= 2
        batch, start = sequences[start:start + rows], start + rows
        width = max(len(s) for s in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, seq in enumerate(batch):
            ids[row, :len(seq)], mask[row, :len(seq)] = torch.tensor(seq), 1
        logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
        scores.append(logits[:, 0].float().cpu())
    return torch.cat(scores) if scores else torch.zeros(0)


def score_conversations(rm: RewardModel, conversations: list[list[Message]], max_length: int = 2048,
                        batch_size: int = 32) -> torch.Tensor:
    sequences = [rm.tokenizer(render(rm.tokenizer, c), add_special_tokens=False)["input_ids"][:max_length]
                 for c in conversations]
    return score_ids(rm.model, rm.tokenizer.pad_token_id, sequences, batch_size)


def pair_metrics(chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, float]:
    """Held-out pair accuracy (ties count half) and the mean reward margin."""
    wins = (chosen > rejected).float() + 0.5 * (chosen == rejected).float()
    return {"eval_accuracy": wins.mean().item(), "eval_margin": (chosen - rejected).mean().item(),
            "eval_reward_chosen": chosen.mean().item(), "eval_reward_rejected": rejected.mean().item()}


def win_rate(rm: RewardModel, prompts: list[list[Message]], answers: list[str], baseline: list[str],
             ) -> dict[str, float]:
    """How often the judge prefers `answers` over `baseline` on the same prompts (ties count half)."""
    def scored(texts: list[str]) -> torch.Tensor:
        return score_conversations(rm, [p + [{"role": "assistant", "content": t}] for p, t in zip(prompts, texts,
                                                                                                  strict=True)])

    ours, theirs = scored(answers), scored(baseline)
    metrics = pair_metrics(ours, theirs)
    return {"win_rate": metrics["eval_accuracy"], "reward": ours.mean().item(), "baseline_reward": theirs.mean().item(),
            "prompts": len(prompts)}
