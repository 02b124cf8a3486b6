"""Sampling a rollout's completions: padded `generate`, or transformers' continuous batching.

padded: one left-padded batch through `model.generate`, every row stepping until the longest stops.
continuous: each completion is a request to transformers' continuous-batching engine (`generate_batch`,
paged KV cache), which drops finished sequences from the batch as it goes; its seed is drawn from torch's
global generator, so a resumed run samples the same completions. Either way the rollout recomputes the
log-probs with the same forward the update uses, and tests check the continuous engine's own log-probs
against that recomputation.

`ppo.generation: auto` picks, from measurements written down here (`llmforge bench --only online`,
16 prompts x 4 samples x 32 tokens):
- CPU: padded. On a 2-core Xeon (tiny model, float32) one padded rollout took 0.8-1.5 s, the continuous
  engine 2-30 s for the same 64 completions of up to 32 tokens: its per-token scheduling costs more than
  the padding it saves at this size.
- GPU: continuous where the strategy allows (below); not yet measured on a GPU.
- sharded strategies (FSDP, ZeRO-3) always use padded: the continuous engine runs the module it is given,
  not the gathered parameters.
"""

from __future__ import annotations

from typing import Any

import torch

from llmforge.rl.core import left_pad

ENGINES = ("padded", "continuous")


def choose_engine(setting: str, device: str, strategy: str) -> str:
    if setting != "auto":
        return setting
    if strategy in ("fsdp", "deepspeed"):
        return "padded"
    return "padded" if device == "cpu" else "continuous"


def sample_padded(policy: Any, prompts: list[list[int]], pad_id: int, max_new_tokens: int, temperature: float,
                  top_p: float, stop_ids: list[int]) -> torch.Tensor:
    """[B, T] sampled tokens after each (left-padded) prompt; rows that stopped early are padded."""
    device = next(policy.parameters()).device
    ids, mask = left_pad(prompts, pad_id)
    out = policy.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                          do_sample=True, temperature=temperature, top_p=top_p, top_k=0, use_cache=True,
                          eos_token_id=stop_ids, pad_token_id=pad_id)
    return out[:, ids.shape[1]:]


def sample_continuous(policy: Any, prompts: list[list[int]], pad_id: int, max_new_tokens: int, temperature: float,
                      top_p: float, stop_ids: list[int], logprobs: bool = False,
                      ) -> tuple[torch.Tensor, list[list[float]]]:
    """Continuous batching: ([B, T] sampled tokens right-padded with pad_id, each row's sampler log-probs)."""
    from transformers import ContinuousBatchingConfig, GenerationConfig

    seed = int(torch.randint(0, 2**31 - 1, (1,)).item())  # from the global generator: resumes sample the same
    config = GenerationConfig(do_sample=True, temperature=temperature, top_p=top_p, top_k=0,
                              max_new_tokens=max_new_tokens, eos_token_id=stop_ids, pad_token_id=pad_id)
    engine = ContinuousBatchingConfig(seed=seed, return_logprobs=logprobs, max_queue_size=0)
    model = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
    results = model.generate_batch(prompts, generation_config=config, continuous_batching_config=engine,
                                   progress_bar=False, warmup=False)
    ordered = sorted(results.values(), key=lambda r: _position(r.request_id))
    if len(ordered) != len(prompts) or any(r.error for r in ordered):
        errors = [r.error for r in ordered if r.error]
        raise RuntimeError(f"continuous batching returned {len(ordered)} of {len(prompts)} completions {errors[:1]}")
    width = max((len(r.generated_tokens) for r in ordered), default=0)
    tokens = torch.full((len(ordered), max(width, 1)), pad_id, dtype=torch.long)
    for row, result in enumerate(ordered):
        tokens[row, :len(result.generated_tokens)] = torch.tensor(result.generated_tokens, dtype=torch.long)
    device = next(policy.parameters()).device
    return tokens.to(device), [list(r.logprobs) for r in ordered]


def _position(request_id: str) -> int:
    """Requests are numbered in the order they were added ('req_12')."""
    digits = "".join(ch for ch in request_id.rsplit("_", 1)[-1] if ch.isdigit())
    return int(digits) if digits else 0
