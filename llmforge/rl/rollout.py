"""One PPO rollout: sample completions, score them, and turn the scores into per-token advantages.

Prompts are left-padded so every one ends where generation starts; position ids count
real tokens only, so a padded prompt sees the same positions it would alone. Log-probs
are recomputed after sampling with one forward at the sampling temperature, the same
forward the update later repeats, so the first PPO ratio is exactly 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from llmforge.rl.core import (
    KLController,
    apply_eos_penalty,
    gae,
    kl_per_token,
    leave_one_out_baseline,
    left_pad,
    masked_mean,
    masked_whiten,
    position_ids,
    response_mask,
    reward_to_go,
    token_rewards,
)
from llmforge.rl.models import gathered_for_generation, reference_of
from llmforge.rl.sampling import ContinuousSampler, sample_padded


@dataclass
class Rollout:
    input_ids: torch.Tensor  # [B, P + T] prompt (left-padded) then response (right-padded)
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    responses: torch.Tensor  # [B, T]
    mask: torch.Tensor  # [B, T] 1 on response tokens up to and including the stop token
    logprobs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    prompt_width: int
    stats: dict[str, float]

    def __len__(self) -> int:
        return self.input_ids.shape[0]


@dataclass
class RolloutSettings:
    max_new_tokens: int
    temperature: float
    top_p: float
    stop_ids: list[int]
    pad_id: int
    micro_batch_size: int
    kl_estimator: str
    gamma: float
    lam: float
    whiten_advantages: bool
    missing_eos_penalty: float | None
    reward_clip: float | None
    advantage_estimator: str = "gae"
    samples_per_prompt: int = 1


ROW_INTERNALS = ("prompt", "prompt_ids")  # what a prompt row carries besides the columns reward functions read


def prompt_columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The prompt rows' other columns as keyword lists (e.g. `answer`), as reward functions receive them."""
    names = [key for key in rows[0] if key not in ROW_INTERNALS] if rows else []
    return {name: [row.get(name) for row in rows] for name in names}


@torch.no_grad()
def make_rollout(accelerator: Any, model: Any, ref_model: Any, tokenizer: Any, scorer: Any, kl: KLController,
                 prompts: list[dict[str, Any]], s: RolloutSettings, continuous: ContinuousSampler | None = None,
                 ) -> Rollout:
    """Sample one completion per prompt row ({prompt_ids, prompt, answer}; rows of one prompt come together
    when it is sampled several times) and compute everything PPO needs. With `continuous`, its engine samples;
    otherwise one padded `generate` batch (rl/sampling.py)."""
    device = accelerator.device
    prompt_ids, prompt_mask = left_pad([row["prompt_ids"] for row in prompts], s.pad_id)
    prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
    width = prompt_ids.shape[1]
    model.eval()
    with gathered_for_generation(accelerator, model) as policy:
        sampled = [row["prompt_ids"] for row in prompts]
        if continuous is not None:
            responses, _ = continuous.sample(policy, sampled)
        else:
            responses = sample_padded(policy, sampled, s.pad_id, s.max_new_tokens, s.temperature, s.top_p, s.stop_ids)
    mask, ended = response_mask(responses, s.stop_ids)
    responses = responses.masked_fill(mask == 0, s.pad_id)
    input_ids = torch.cat([prompt_ids, responses], dim=1)
    attention = torch.cat([prompt_mask, mask], dim=1)
    positions = position_ids(attention)

    def chunks() -> Iterator[tuple[slice, dict[str, Any]]]:  # forwards of micro-batch size
        for start in range(0, len(prompts), s.micro_batch_size):
            part = slice(start, start + s.micro_batch_size)
            yield part, {"input_ids": input_ids[part], "attention_mask": attention[part],
                         "position_ids": positions[part], "responses": responses[part], "mask": mask[part],
                         "prompt_width": width}

    logprobs, entropy, values = [], [], []
    for _, inputs in chunks():  # one micro-batch at a time, scored at the response positions only
        scored = model(**inputs, with_entropy=True)
        logprobs.append(scored.logprobs)
        entropy.append(scored.entropy)
        values.append(scored.values.float())
    logprobs, entropy, values = torch.cat(logprobs), torch.cat(entropy), torch.cat(values)
    with reference_of(accelerator, model, ref_model) as reference:
        ref_logprobs = torch.cat([reference(**inputs) for _, inputs in chunks()])
    model.train()

    texts = tokenizer.batch_decode(responses, skip_special_tokens=True)  # past the stop token: padding
    scores, source_means = scorer([row["prompt"] for row in prompts], texts, prompt_columns(prompts))
    scores = apply_eos_penalty(scores.to(device), ended, s.missing_eos_penalty)
    if s.reward_clip:
        scores = scores.clamp(-s.reward_clip, s.reward_clip)

    mask_f = mask.float()
    kl_tokens = kl_per_token(logprobs, ref_logprobs, s.kl_estimator) * mask_f
    if s.advantage_estimator == "rloo":  # no value model: the other samples of the prompt are the baseline
        rewards = token_rewards(scores - leave_one_out_baseline(scores, s.samples_per_prompt), kl_tokens, kl.value,
                                mask_f)
        advantages = returns = reward_to_go(rewards, mask_f)
    else:
        rewards = token_rewards(scores, kl_tokens, kl.value, mask_f)
        advantages, returns = gae(rewards, values, mask_f, s.gamma, s.lam)
    if s.whiten_advantages:
        advantages = masked_whiten(advantages, mask_f)
    stats = {
        "reward": scores.mean().item(),
        "kl": kl_tokens.sum(dim=1).mean().item(),
        "non_score_reward": -(kl.value * kl_tokens).sum(dim=1).mean().item(),
        "entropy": masked_mean(entropy, mask_f).item(),
        "response_length": mask_f.sum(dim=1).mean().item(),
        "ended_fraction": ended.float().mean().item(),
        "value_mean": masked_mean(values, mask_f).item(),
        **source_means,
    }
    return Rollout(input_ids, attention, positions, responses, mask_f, logprobs, values * mask_f, advantages,
                   returns, width, stats)
