"""pass@k on prompts with a verifiable answer: how much room reinforcement learning has to work with.

RL with a verifiable reward (PPO, GRPO) can only turn answers the model already samples into answers it
gives first: where pass@1 (greedy, or one sample) is far below pass@k, there is room; where they meet, RL
has nothing to sharpen. `n` completions are sampled per prompt at `temperature`; pass@k is Chen et al.'s
(2021) unbiased estimate 1 - C(n-c, k) / C(n, k) averaged over prompts, c the number of right samples.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from llmforge.errors import UserError
from llmforge.eval.answers import is_correct
from llmforge.eval.exact_match import exact_match
from llmforge.inference import generate
from llmforge.registry import LoadedModel


def pass_at_k(n: int, correct: int, k: int) -> float:
    """Chance that at least one of k samples drawn without replacement from n (correct of them right) is right."""
    if not 0 <= correct <= n or not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs 1 <= k <= n and 0 <= correct <= n (n={n}, correct={correct})")
    if n - correct < k:
        return 1.0
    return 1.0 - math.comb(n - correct, k) / math.comb(n, k)


def sampled_pass_at_k(loaded: LoadedModel, items: list[dict[str, Any]], ks: list[int], temperature: float = 1.0,
                      max_new_tokens: int = 12, seed: int = 0) -> dict[str, Any]:
    """Greedy exact match and pass@k (each k in `ks`) from max(ks) samples per prompt at `temperature`."""
    if not ks or min(ks) < 1:
        raise UserError(f"pass@k needs k >= 1, got {ks}.")
    n = max(ks)
    torch.manual_seed(seed)
    repeated = [item for item in items for _ in range(n)]
    texts = generate(loaded, [item["messages"] for item in repeated], max_new_tokens=max_new_tokens,
                     temperature=temperature, batch_size=max(32, n))
    right = [sum(is_correct(texts[i * n + j], item["answer"]) for j in range(n)) for i, item in enumerate(items)]
    result: dict[str, Any] = {"greedy_accuracy": exact_match(loaded, items, max_new_tokens)["accuracy"],
                              "samples_per_prompt": n, "temperature": temperature, "prompts": len(items)}
    for k in sorted(set(ks)):
        result[f"pass@{k}"] = sum(pass_at_k(n, c, k) for c in right) / len(items)
    result["never_right"] = sum(c == 0 for c in right) / len(items)
    return result
