"""The arithmetic of PPO on token sequences, as pure tensor functions.

Everything here works on [batch, response_length] tensors with a 0/1 `mask` marking the
response tokens that exist (up to and including the stop token). Kept free of models so
each piece can be checked against values computed by hand.
"""

from __future__ import annotations

from typing import Literal

import torch

KLEstimator = Literal["k1", "k2", "k3"]


def masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum()


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions where mask is 1 (0 when there are none)."""
    return masked_sum(values, mask) / mask.sum().clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    mean = masked_mean(values, mask)
    count = mask.sum()
    variance = masked_mean((values - mean) ** 2, mask)
    if unbiased and count > 1:
        variance = variance * count / (count - 1)
    return variance


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Zero mean (unless `shift_mean` is off), unit variance over the masked positions; padding stays 0."""
    mean, variance = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(variance + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def kl_per_token(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: KLEstimator = "k1") -> torch.Tensor:
    """Estimates of KL(policy || reference) at each sampled token (Schulman's k1, k2, k3).

    k1 = log p - log q is unbiased but can be negative; k3 = (q/p - 1) - log(q/p) is unbiased and
    never negative; k2 = (log p - log q)^2 / 2 is biased, low-variance.
    """
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio**2
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}")


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last response token of each row (0 for an empty response)."""
    return (mask.sum(dim=1) - 1).clamp(min=0).long()


def apply_eos_penalty(scores: torch.Tensor, ended: torch.Tensor, penalty: float | None) -> torch.Tensor:
    """Subtract `penalty` from the score of every response that stopped only at max_new_tokens."""
    if not penalty:
        return scores
    return scores - penalty * (~ended).to(scores.dtype)


def normalise_scores(scores: torch.Tensor, mean: float | None, std: float | None, clip: float | None,
                     ) -> torch.Tensor:
    """Reward-model scores on a common scale: (score - mean) / std with the RM's saved statistics, clipped."""
    if mean is not None and std is not None:
        scores = (scores - mean) / max(std, 1e-8)
    if clip:
        scores = scores.clamp(-clip, clip)
    return scores


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, kl_coef: float, mask: torch.Tensor) -> torch.Tensor:
    """Per-token rewards: -kl_coef * KL at every response token, plus the sequence score at its last token."""
    rewards = -kl_coef * kl * mask
    rows = torch.arange(scores.shape[0], device=scores.device)
    rewards[rows, last_token_index(mask)] += scores.to(rewards.dtype)
    return rewards


def leave_one_out_baseline(scores: torch.Tensor, group: int) -> torch.Tensor:
    """RLOO: each completion's baseline is the mean score of the other completions of the same prompt.

    `scores` holds `group` consecutive completions per prompt. Unlike a learnt value, this baseline knows
    each prompt's difficulty from the first step, which is what a sparse 0/1 reward needs.
    """
    grouped = scores.view(-1, group)
    return ((grouped.sum(dim=1, keepdim=True) - grouped) / (group - 1)).reshape(-1)


def reward_to_go(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """REINFORCE returns: the undiscounted sum of the rewards from each token to the end of its response."""
    return (rewards * mask).flip(1).cumsum(dim=1).flip(1) * mask


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float,
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over right-padded responses. Returns (advantages, returns).

    delta_t = r_t + gamma * V_{t+1} - V_t with V = 0 after the last token;
    A_t = delta_t + gamma * lam * A_{t+1}.
    """
    values = values * mask
    rewards = rewards * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    length = rewards.shape[1]
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                clip: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate: mean over tokens of max(-A r, -A clip(r, 1-e, 1+e)), r = p/p_old.

    Also returns the share of tokens where clipping bit (clipfrac) and approx_kl = mean((log r)^2)/2.
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean((clipped > unclipped).float(), mask),
                 "approx_kl": 0.5 * masked_mean(log_ratio**2, mask)}
    return loss, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss: mean over tokens of max((V - R)^2, (V_clipped - R)^2) / 2."""
    unclipped = (values - returns) ** 2
    if clip is None:
        return 0.5 * masked_mean(unclipped, mask), {"value_clipfrac": torch.zeros(())}
    clipped_values = old_values + torch.clamp(values - old_values, -clip, clip)
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {"value_clipfrac": masked_mean((clipped > unclipped).float(), mask)}
    return loss, stats


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the softmax distribution at each position: logsumexp(z) - sum(p z)."""
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)


def logprobs_of(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(token) under each position's logits ([B, T, V], [B, T] -> [B, T])."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def response_mask(responses: torch.Tensor, stop_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask, ended): mask covers each response up to and including its first stop token;
    ended says whether a stop token was emitted at all (a response cut at max_new_tokens did not)."""
    is_stop = torch.isin(responses, torch.tensor(stop_ids, device=responses.device))
    stops_before = torch.cumsum(is_stop.long(), dim=1) - is_stop.long()  # stop tokens strictly before t
    mask = (stops_before == 0).long()
    return mask, is_stop.any(dim=1)


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and attention mask, so every prompt ends where generation begins."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq):] = torch.tensor(seq)
            mask[row, width - len(seq):] = 1
    return ids, mask


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only: a left-padded row starts at 0 at its first real token."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)


class KLController:
    """The KL coefficient: fixed, or adapted towards a target KL over a horizon (Ziegler et al. 2019).

    Adaptive update after each rollout: coef *= 1 + clip(kl / target - 1, -0.2, 0.2) * n / horizon,
    where n is the number of sequences in the rollout.
    """

    def __init__(self, coef: float, target: float | None = None, horizon: int = 10000) -> None:
        self.value = coef
        self.target = target
        self.horizon = horizon

    def update(self, kl: float, n: int) -> None:
        if self.target is None:
            return
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n / self.horizon

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])
