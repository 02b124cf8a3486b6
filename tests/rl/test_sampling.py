"""Rollout sampling engines: continuous batching samples what the trainer then scores, reproducibly."""

from __future__ import annotations

import torch

from llmforge.config.schema import ModelConfig
from llmforge.registry import load_model
from llmforge.registry.folders import stop_token_ids
from llmforge.rl.core import left_pad, position_ids, response_mask
from llmforge.rl.models import response_logprobs
from llmforge.rl.sampling import ContinuousSampler, choose_engine, sample_continuous


def test_auto_picks_padded_on_cpu_and_for_sharded_strategies():
    assert choose_engine("auto", "cpu", "ddp") == "padded"
    assert choose_engine("auto", "cuda", "deepspeed") == "padded" and choose_engine("auto", "cuda", "ddp") == "continuous"
    assert choose_engine("continuous", "cpu", "ddp") == "continuous"


def tiny() -> tuple:
    torch.manual_seed(0)
    loaded = load_model(ModelConfig(name="tiny-llama"))
    model, tokenizer = loaded.model.eval(), loaded.tokenizer
    prompts = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in ("Tom went", "One day a cat saw",
                                                                                   "Mia had")]
    return model, tokenizer, stop_token_ids(tokenizer, loaded.family), prompts


def assert_log_probs_match(model, tokenizer, stops, prompts, tokens, sampler_logprobs) -> None:
    """The sampler's log-probs of what it sampled equal the forward the PPO update uses (left-padded prompts,
    positions over real tokens)."""
    ids, mask = left_pad(prompts, tokenizer.pad_token_id)
    responses_mask, _ = response_mask(tokens, stops)
    inputs = torch.cat([ids, tokens.masked_fill(responses_mask == 0, tokenizer.pad_token_id)], dim=1)
    attention = torch.cat([mask, responses_mask], dim=1)
    with torch.no_grad():
        logits = model(input_ids=inputs, attention_mask=attention, position_ids=position_ids(attention)).logits
    recomputed = response_logprobs(logits, tokens, ids.shape[1], 1.0)
    for row, logprobs in enumerate(sampler_logprobs):
        n = int(responses_mask[row].sum())
        assert n > 0 and torch.allclose(torch.tensor(logprobs[:n]), recomputed[row, :n], atol=1e-4)


def test_continuous_batching_log_probs_equal_the_trainers_recomputation():
    """The engine's own log-probs equal the trainer's recomputation, and the same seed state samples the same
    completions."""
    model, tokenizer, stops, prompts = tiny()
    torch.manual_seed(5)
    tokens, sampler_logprobs = sample_continuous(model, prompts, tokenizer.pad_token_id, 6, 1.0, 1.0, stops,
                                                 logprobs=True)
    torch.manual_seed(5)
    again, _ = sample_continuous(model, prompts, tokenizer.pad_token_id, 6, 1.0, 1.0, stops)
    assert torch.equal(tokens, again)
    assert_log_probs_match(model, tokenizer, stops, prompts, tokens, sampler_logprobs)


def test_one_engine_kept_across_rollouts_follows_the_updates_and_samples_as_a_resumed_run_would():
    """A training run keeps one engine for all its rollouts: after the weights change in place (an update), it
    samples from the new weights, and what it samples equals what a fresh engine (a resumed run's) samples from
    the same generator state."""
    model, tokenizer, stops, prompts = tiny()
    sampler = ContinuousSampler(len(prompts), max(map(len, prompts)), 6, 1.0, 1.0, stops, tokenizer.pad_token_id,
                                logprobs=True)
    try:
        torch.manual_seed(7)
        first, _ = sampler.sample(model, prompts)
        with torch.no_grad():  # an update, in place
            noise = torch.Generator().manual_seed(3)
            for parameter in model.parameters():
                parameter.add_(torch.randn(parameter.shape, generator=noise) * 0.05)
        state = torch.get_rng_state()
        second, second_logprobs = sampler.sample(model, prompts)
    finally:
        sampler.close()
    assert_log_probs_match(model, tokenizer, stops, prompts, second, second_logprobs)
    torch.set_rng_state(state)
    fresh, _ = sample_continuous(model, prompts, tokenizer.pad_token_id, 6, 1.0, 1.0, stops)
    assert torch.equal(second, fresh) and not torch.equal(first, second)
