"""PPO's held-out evaluation during training: greedy answers to the eval prompts, graded by exact match where
they have an answer (eval_accuracy) and scored by the run's own rewards (eval_reward)."""

from __future__ import annotations

from typing import Any

import torch

from llmforge.data.chat import encode_prompt
from llmforge.eval.answers import is_correct
from llmforge.rl.core import left_pad


@torch.no_grad()
def evaluate_policy(policy: Any, tokenizer: Any, items: list[dict[str, Any]], scorer: Any, stop_ids: list[int],
                    max_new_tokens: int, batch_size: int = 32) -> dict[str, float]:
    """items: {"messages", "answer"} (held-out prompt rows)."""
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
    answers = [item.get("answer") for item in items]
    scores, _ = scorer([item["messages"] for item in items], texts, {"answer": answers})
    metrics = {"eval_reward": float(scores.float().mean())}
    graded = [(text, answer) for text, answer in zip(texts, answers, strict=True) if answer is not None]
    if graded:
        metrics["eval_accuracy"] = sum(is_correct(text, answer) for text, answer in graded) / len(graded)
    return metrics
