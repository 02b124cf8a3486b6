"""PPO arithmetic against values computed by hand (each expected number is worked out in a comment)."""

from __future__ import annotations

import math

import pytest
import torch

from llmforge.rl.core import (
    KLController,
    apply_eos_penalty,
    entropy_from_logits,
    gae,
    kl_per_token,
    leave_one_out_baseline,
    left_pad,
    logprobs_of,
    masked_mean,
    masked_var,
    masked_whiten,
    normalise_scores,
    policy_loss,
    position_ids,
    response_mask,
    reward_to_go,
    token_rewards,
    value_loss,
)

T = torch.tensor


def test_masked_mean_and_variance_ignore_padding():
    values = T([[1.0, 2.0, 3.0], [4.0, 100.0, 100.0]])
    mask = T([[1, 1, 1], [1, 0, 0]])
    assert masked_mean(values, mask).item() == pytest.approx(2.5)  # (1+2+3+4)/4
    # deviations -1.5 -0.5 0.5 1.5 -> squares sum 5; biased 5/4, unbiased 5/3
    assert masked_var(values, mask, unbiased=False).item() == pytest.approx(1.25)
    assert masked_var(values, mask).item() == pytest.approx(5 / 3)
    assert masked_mean(values, torch.zeros_like(mask)).item() == 0.0


def test_whitening_gives_zero_mean_unit_variance_on_real_tokens_and_zero_on_padding():
    values = T([[1.0, 2.0, 3.0], [4.0, 100.0, 100.0]])
    mask = T([[1, 1, 1], [1, 0, 0]])
    whitened = masked_whiten(values, mask)
    scale = 1 / math.sqrt(5 / 3)
    expected = T([[-1.5 * scale, -0.5 * scale, 0.5 * scale], [1.5 * scale, 0.0, 0.0]])
    assert torch.allclose(whitened, expected, atol=1e-6)
    kept = masked_whiten(values, mask, shift_mean=False)
    assert masked_mean(kept, mask).item() == pytest.approx(2.5)


def test_kl_estimators_match_their_formulas():
    logp, ref = T([math.log(0.5)]), T([math.log(0.25)])
    # log ratio = log 2
    assert kl_per_token(logp, ref, "k1").item() == pytest.approx(math.log(2))
    assert kl_per_token(logp, ref, "k2").item() == pytest.approx(0.5 * math.log(2) ** 2)
    # k3 = (q/p - 1) - log(q/p) = (0.5 - 1) + log 2
    assert kl_per_token(logp, ref, "k3").item() == pytest.approx(-0.5 + math.log(2))
    # k1 can be negative, k3 never is
    assert kl_per_token(ref, logp, "k1").item() < 0 < kl_per_token(ref, logp, "k3").item()
    assert kl_per_token(logp, logp, "k3").item() == 0.0


def test_score_is_placed_at_the_last_real_token_beside_the_kl_penalty():
    scores = T([1.0, -2.0])
    kl = T([[0.1, 0.2, 0.3], [0.5, 0.5, 9.0]])
    mask = T([[1, 1, 1], [1, 1, 0]])
    rewards = token_rewards(scores, kl, kl_coef=0.1, mask=mask)
    expected = T([[-0.01, -0.02, -0.03 + 1.0], [-0.05, -0.05 - 2.0, 0.0]])
    assert torch.allclose(rewards, expected, atol=1e-6)


def test_eos_penalty_hits_only_responses_that_never_stopped():
    scores = T([1.0, 1.0])
    assert torch.equal(apply_eos_penalty(scores, T([True, False]), 2.0), T([1.0, -1.0]))
    assert torch.equal(apply_eos_penalty(scores, T([True, False]), None), scores)


def test_scores_are_normalised_with_saved_statistics_then_clipped():
    scores = T([3.0, -7.0, 1.0])
    # (3-1)/2 = 1, (-7-1)/2 = -4 -> clipped to -3, (1-1)/2 = 0
    assert torch.equal(normalise_scores(scores, mean=1.0, std=2.0, clip=3.0), T([1.0, -3.0, 0.0]))
    assert torch.equal(normalise_scores(scores, None, None, None), scores)


def test_gae_by_hand():
    rewards = T([[0.0, 0.0, 1.0], [0.0, 2.0, 0.0]])
    values = T([[0.5, 0.6, 0.7], [1.0, 1.0, 5.0]])
    mask = T([[1, 1, 1], [1, 1, 0]])
    advantages, returns = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    # row 0: d2 = 1 - 0.7 = 0.3; d1 = 0 + 0.9*0.7 - 0.6 = 0.03; d0 = 0.9*0.6 - 0.5 = 0.04
    #        A2 = 0.3; A1 = 0.03 + 0.45*0.3 = 0.165; A0 = 0.04 + 0.45*0.165 = 0.11425
    # row 1 (last token at t=1, the 5.0 beyond it is padding): d1 = 2 - 1 = 1; d0 = 0.9*1 - 1 = -0.1
    #        A1 = 1; A0 = -0.1 + 0.45 = 0.35
    expected = T([[0.11425, 0.165, 0.3], [0.35, 1.0, 0.0]])
    assert torch.allclose(advantages, expected, atol=1e-6)
    assert torch.allclose(returns, expected + values * mask, atol=1e-6)


def test_gae_with_gamma_and_lambda_one_is_reward_to_go_minus_value():
    rewards, values, mask = T([[1.0, 2.0, 3.0]]), T([[0.5, 0.5, 0.5]]), T([[1, 1, 1]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert torch.allclose(returns, T([[6.0, 5.0, 3.0]]))
    assert torch.allclose(advantages, T([[5.5, 4.5, 2.5]]))


def test_clipped_policy_loss_by_hand():
    old = torch.zeros(1, 3)
    new = T([[math.log(1.5), math.log(0.5), math.log(1.1)]])  # ratios 1.5, 0.5, 1.1
    advantages = T([[1.0, 1.0, -1.0]])
    mask = T([[1, 1, 1]])
    loss, stats = policy_loss(new, old, advantages, mask, clip=0.2)
    # token 0: max(-1.5, -1.2) = -1.2 (clipped); token 1: max(-0.5, -0.8) = -0.5; token 2: max(1.1, 1.1) = 1.1
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 1.1) / 3)
    assert stats["clipfrac"].item() == pytest.approx(1 / 3)
    expected_kl = 0.5 * (math.log(1.5) ** 2 + math.log(0.5) ** 2 + math.log(1.1) ** 2) / 3
    assert stats["approx_kl"].item() == pytest.approx(expected_kl)


def test_policy_loss_gradient_vanishes_where_clipping_binds():
    new = T([[math.log(1.5), math.log(0.9)]]).requires_grad_()
    loss, _ = policy_loss(new, torch.zeros(1, 2), T([[1.0, 1.0]]), T([[1, 1]]), clip=0.2)
    loss.backward()
    # token 0 is clipped (ratio 1.5 > 1.2 with A > 0): no gradient; token 1: d(-r/2)/dlogp = -0.9/2
    assert torch.allclose(new.grad, T([[0.0, -0.45]]))


def test_clipped_value_loss_by_hand():
    old = T([[1.0, 1.0]])
    new = T([[2.0, 1.1]])
    returns = T([[3.0, 0.0]])
    loss, stats = value_loss(new, old, returns, T([[1, 1]]), clip=0.2)
    # token 0: unclipped (2-3)^2 = 1, clipped V = 1.2 -> (1.2-3)^2 = 3.24 -> 3.24
    # token 1: unclipped 1.21, clipped V = 1.1 (within range) -> 1.21
    assert loss.item() == pytest.approx(0.5 * (3.24 + 1.21) / 2)
    assert stats["value_clipfrac"].item() == pytest.approx(0.5)
    plain, _ = value_loss(new, old, returns, T([[1, 1]]), clip=None)
    assert plain.item() == pytest.approx(0.5 * (1.0 + 1.21) / 2)


def test_entropy_and_logprobs_from_logits():
    logits = torch.log(T([[[0.5, 0.25, 0.25]]]))
    assert entropy_from_logits(logits).item() == pytest.approx(-(0.5 * math.log(0.5) + 0.5 * math.log(0.25)))
    assert entropy_from_logits(torch.zeros(1, 1, 4)).item() == pytest.approx(math.log(4))
    assert logprobs_of(logits, T([[1]])).item() == pytest.approx(math.log(0.25))


def test_response_mask_stops_after_the_first_stop_token():
    responses = T([[5, 6, 2, 7, 2], [5, 6, 7, 8, 9], [3, 2, 2, 0, 0]])
    mask, ended = response_mask(responses, stop_ids=[2, 3])
    # row 2 stops at its first token (3 is a stop id too)
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]
    assert ended.tolist() == [True, False, True]


def test_left_padding_and_position_ids():
    ids, mask = left_pad([[7, 8, 9], [4]], pad_id=0)
    assert ids.tolist() == [[7, 8, 9], [0, 0, 4]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    full_mask = torch.cat([mask, T([[1, 1], [1, 0]])], dim=1)
    # the second prompt's first real token is at position 0; its response continues 1, then padding
    assert position_ids(full_mask).tolist() == [[0, 1, 2, 3, 4], [0, 0, 0, 1, 1]]


def test_kl_controller_fixed_and_adaptive():
    fixed = KLController(0.1)
    fixed.update(kl=5.0, n=64)
    assert fixed.value == 0.1
    adaptive = KLController(0.1, target=1.0, horizon=100)
    adaptive.update(kl=5.0, n=10)  # error clipped to 0.2: 0.1 * (1 + 0.2 * 10/100)
    assert adaptive.value == pytest.approx(0.102)
    adaptive.update(kl=0.9, n=50)  # error -0.1: * (1 - 0.1 * 0.5)
    assert adaptive.value == pytest.approx(0.102 * 0.95)
    restored = KLController(0.1, target=1.0, horizon=100)
    restored.load_state_dict(adaptive.state_dict())
    assert restored.value == adaptive.value


def test_leave_one_out_baseline_by_hand():
    # two prompts, three samples each: the baseline of a sample is the mean of its two siblings
    scores = T([1.0, 0.0, 0.0, 1.0, 1.0, 4.0])
    assert leave_one_out_baseline(scores, 3).tolist() == [0.0, 0.5, 0.5, 2.5, 2.5, 1.0]


def test_reward_to_go_sums_the_rest_of_each_response():
    rewards = T([[0.1, 0.2, 1.0, 9.0], [0.5, 2.0, 9.0, 9.0]])
    mask = T([[1, 1, 1, 0], [1, 1, 0, 0]])
    assert torch.allclose(reward_to_go(rewards, mask), T([[1.3, 1.2, 1.0, 0.0], [2.5, 2.0, 0.0, 0.0]]))
