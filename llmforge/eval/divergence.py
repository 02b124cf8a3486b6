"""How far a tuned model has moved from the one it started from: KL(model || start) on held-out prompts.

Estimated the way PPO measures it during training (k1: the log-ratio summed over the
tokens of the model's own temperature-1 samples), so the pipeline report can put DPO,
PPO and GRPO on the same footing. The end-of-turn token is not part of a completion
here, so the estimate covers the answer's tokens only.
"""

from __future__ import annotations

import torch

from llmforge.data.chat import encode_prompt
from llmforge.data.formats import Message
from llmforge.inference import generate_ids
from llmforge.registry import LoadedModel


@torch.no_grad()
def completion_logprob(loaded: LoadedModel, prompt: list[int], completion: list[int]) -> float:
    model = loaded.model
    ids = torch.tensor([prompt + completion], device=model.device)
    logits = model(input_ids=ids, use_cache=False).logits[0, len(prompt) - 1:-1].float()
    return logits.log_softmax(-1).gather(-1, ids[0, len(prompt):, None]).sum().item()


def sampled_kl(policy: LoadedModel, reference: LoadedModel, prompts: list[list[Message]], max_new_tokens: int = 32,
               seed: int = 0, batch_size: int = 32) -> float | None:
    """Mean over prompts of sum_t log p(y_t) - log q(y_t), y ~ p; None when the vocabularies differ."""
    if policy.tokenizer.get_vocab() != reference.tokenizer.get_vocab():
        return None
    encoded = [encode_prompt(policy.tokenizer, p) for p in prompts]
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        completions = [c for start in range(0, len(encoded), batch_size)
                       for c in generate_ids(policy, encoded[start:start + batch_size], max_new_tokens,
                                             temperature=1.0)]
    finally:
        torch.random.set_rng_state(generator_state)
    ratios = [completion_logprob(policy, p, c) - completion_logprob(reference, p, c)
              for p, c in zip(encoded, completions, strict=True) if c]
    return sum(ratios) / len(encoded) if encoded else None
