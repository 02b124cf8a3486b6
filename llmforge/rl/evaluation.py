"""Held-out evaluation during training: greedy answers to the eval prompts, graded by exact match where they
have an answer (eval_accuracy); our PPO also scores them with the run's own rewards (eval_reward), and TRL's
trainers get the same exact match every eval.every_steps through HeldOutAccuracy."""

from __future__ import annotations

from typing import Any

import torch
from transformers import TrainerCallback

from llmforge.data.chat import encode_prompt
from llmforge.eval.answers import is_correct
from llmforge.rl.core import left_pad


@torch.no_grad()
def greedy_answers(policy: Any, tokenizer: Any, items: list[dict[str, Any]], stop_ids: list[int],
                   max_new_tokens: int, batch_size: int = 32) -> list[str]:
    """The policy's greedy completion of each item's messages, cut at the first stop token; leaves the
    policy in the mode (train/eval) it was in."""
    was_training = policy.training
    policy.eval()
    texts: list[str] = []
    device = next(policy.parameters()).device
    for start in range(0, len(items), batch_size):
        batch = items[start:start + batch_size]
        ids, mask = left_pad([encode_prompt(tokenizer, item["messages"]) for item in batch], tokenizer.pad_token_id)
        out = policy.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                              do_sample=False, temperature=None, top_p=None, top_k=None, eos_token_id=stop_ids,
                              pad_token_id=tokenizer.pad_token_id)
        for row in out[:, ids.shape[1]:].tolist():
            cut = next((i for i, token in enumerate(row) if token in stop_ids), len(row))
            texts.append(tokenizer.decode(row[:cut], skip_special_tokens=True))
    policy.train(was_training)
    return texts


def graded_share(texts: list[str], answers: list[str | None]) -> float | None:
    """Share of the answered items whose text is right (None when no item has an answer)."""
    graded = [(text, answer) for text, answer in zip(texts, answers, strict=True) if answer is not None]
    return sum(is_correct(text, answer) for text, answer in graded) / len(graded) if graded else None


def evaluate_policy(policy: Any, tokenizer: Any, items: list[dict[str, Any]], scorer: Any, stop_ids: list[int],
                    max_new_tokens: int, batch_size: int = 32) -> dict[str, float]:
    """items: {"messages", "answer"} (held-out prompt rows)."""
    texts = greedy_answers(policy, tokenizer, items, stop_ids, max_new_tokens, batch_size)
    answers = [item.get("answer") for item in items]
    scores, _ = scorer([item["messages"] for item in items], texts, {"answer": answers})
    metrics = {"eval_reward": float(scores.float().mean())}
    if (accuracy := graded_share(texts, answers)) is not None:
        metrics["eval_accuracy"] = accuracy
    return metrics


class HeldOutAccuracy(TrainerCallback):
    """Greedy exact match on the held-out prompts every `every` steps (and at step 0 and the last step), added
    to that step's log as eval_accuracy, so metrics.jsonl and the report's curves show held-out skill beside
    the training reward, KL and entropy. For trainers we do not own (TRL's GRPO and DPO); it must come before
    MetricsCallback, which writes the log it adds to. Greedy decoding draws no random numbers, so measuring
    changes nothing a resumed run would see. The start's figure is its parent stage's final eval_accuracy."""

    def __init__(self, items: list[dict[str, Any]], tokenizer: Any, stop_ids: list[int], every: int,
                 max_new_tokens: int = 12) -> None:
        self.items, self.tokenizer, self.stop_ids = items, tokenizer, stop_ids
        self.every, self.max_new_tokens = every, max_new_tokens
        self.pending: dict[str, float] = {}

    def _measure(self, model: Any) -> float:
        texts = greedy_answers(model, self.tokenizer, self.items, self.stop_ids, self.max_new_tokens)
        return graded_share(texts, [item["answer"] for item in self.items]) or 0.0

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is not None and (state.global_step % self.every == 0 or state.global_step >= state.max_steps):
            self.pending["eval_accuracy"] = self._measure(model)
            control.should_log = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.pending and logs is not None:
            logs.update(self.pending)
            self.pending = {}
        return control
