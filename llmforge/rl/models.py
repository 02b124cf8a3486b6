"""The trained pair (policy and value model) as one module, and how the frozen models are run.

Policy and value are wrapped in one module with one forward so DDP, FSDP and DeepSpeed
see a single model and a single optimizer (two parameter groups), and one backward
syncs both. The reference is the policy with its adapters switched off for LoRA runs
(no second copy), else a frozen copy of the start.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
from torch import nn

from llmforge.kernels.vocab import causal_parts
from llmforge.rl.core import entropy_from_logits, logprobs_of
from llmforge.rl.logprobs import backbone_of, response_hidden, token_logprobs


class Scored(NamedTuple):
    """What one forward of the trained pair gives for a batch of rollout rows, at the response positions only
    ([B, T] each, 0 outside the response mask). A tuple, so DDP finds the tensors in it."""

    logprobs: torch.Tensor
    entropy: torch.Tensor | None
    values: torch.Tensor | None


class PolicyAndValue(nn.Module):
    """`value=None` puts a value head on the policy itself (shared backbone: one model in memory, both losses
    train it); the head starts at zero. `value_scale` maps a separate value model's outputs onto the
    reward's scale: one started from the reward model predicts raw scores, while the rewards it must
    predict were rescaled with the reward model's saved mean/std, so its outputs get the same
    (x - mean) / std. Log-probs are taken at `temperature` (the sampling temperature), in chunks unless
    `chunked` is off (rl/logprobs.py)."""

    def __init__(self, policy: nn.Module, value: nn.Module | None, value_scale: tuple[float, float] = (0.0, 1.0),
                 temperature: float = 1.0, chunked: bool = True) -> None:
        super().__init__()
        self.policy = policy
        self.value = value
        self.value_shift, self.value_std = value_scale
        self.temperature, self.chunked = temperature, chunked
        if value is None:
            self.value_head = nn.Linear(policy.config.hidden_size, 1)
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)

    def value_parameters(self) -> list[nn.Parameter]:
        module = self.value if self.value is not None else self.value_head
        return [p for p in module.parameters() if p.requires_grad]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                responses: torch.Tensor, mask: torch.Tensor, prompt_width: int, with_entropy: bool = False,
                with_values: bool = True) -> Scored:
        """Log-probs (and entropy) of the response tokens under the policy, and the values at the positions
        that predict them; the backbone runs once, the head only at the response positions."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}
        backbone, head, config = causal_parts(self.policy)
        hidden = response_hidden(backbone, inputs, prompt_width)
        logprobs, entropy = token_logprobs(hidden, head, config, responses, mask, self.temperature, self.chunked,
                                           with_entropy)
        values = None
        if with_values and self.value is None:
            values = self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)
        elif with_values:
            scores = value_head(self.value)(response_hidden(backbone_of(self.value), inputs, prompt_width))
            values = (scores.squeeze(-1) - self.value_shift) / self.value_std
        return Scored(logprobs, entropy, values)


def value_head(model: nn.Module) -> nn.Module:
    """The one-score head of a sequence-classification model (`score` in every registry family)."""
    head = getattr(model, "score", None)
    if head is None:
        raise TypeError(f"{type(model).__name__} has no `score` head to read values from")
    return head


def disable_dropout(*models: nn.Module | None) -> None:
    """PPO's ratios compare two forwards of the same weights: they must be deterministic in train mode.

    Dropout layers get p=0, and attention modules that apply dropout functionally (reading a float
    `attention_dropout` they copied from the config at init, as Llama/Qwen do) get 0 too.
    """
    for model in models:
        if model is None:
            continue
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0
            if isinstance(getattr(module, "attention_dropout", None), float):
                module.attention_dropout = 0.0


def at_responses(per_position: torch.Tensor, prompt_width: int) -> torch.Tensor:
    """The positions that predict response tokens: from the prompt's last token to the one before the end."""
    return per_position[:, prompt_width - 1:-1]


def response_logprobs(logits: torch.Tensor, responses: torch.Tensor, prompt_width: int, temperature: float,
                      ) -> torch.Tensor:
    """log p of each response token, from the logits one position before it, at the sampling temperature."""
    return logprobs_of(at_responses(logits, prompt_width) / temperature, responses)


def response_entropy(logits: torch.Tensor, prompt_width: int, temperature: float) -> torch.Tensor:
    return entropy_from_logits(at_responses(logits, prompt_width).float() / temperature)


@contextlib.contextmanager
def reference_of(accelerator: Any, wrapped: nn.Module, ref_model: nn.Module | None,
                 ) -> Iterator[Callable[..., torch.Tensor]]:
    """Yields a callable (the forward's arguments) -> the reference model's log-probs of the response tokens."""
    if ref_model is not None:
        unwrapped = accelerator.unwrap_model(wrapped)

        def score(input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                  responses: torch.Tensor, mask: torch.Tensor, prompt_width: int) -> torch.Tensor:
            backbone, head, config = causal_parts(ref_model)
            hidden = response_hidden(backbone, {"input_ids": input_ids, "attention_mask": attention_mask,
                                                "position_ids": position_ids}, prompt_width)
            return token_logprobs(hidden, head, config, responses, mask, unwrapped.temperature, unwrapped.chunked)[0]

        yield score
        return
    # a PEFT policy: the base weights are the reference; the forward still goes through the wrapper (FSDP)
    with accelerator.unwrap_model(wrapped).policy.disable_adapter():
        yield lambda **inputs: wrapped(**inputs, with_values=False).logprobs


@contextlib.contextmanager
def gathered_for_generation(accelerator: Any, wrapped: nn.Module) -> Iterator[nn.Module]:
    """The policy, ready to generate: under ZeRO-3 its parameters are gathered once for the whole rollout
    (not once per token); under FSDP the root's own parameters (embeddings, head) are unsharded."""
    unwrapped = accelerator.unwrap_model(wrapped)
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is not None and plugin.zero_stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(unwrapped.policy.parameters())):
            yield unwrapped.policy
        return
    unshard = getattr(wrapped, "unshard", None)  # FSDP2 modules
    if unshard is not None:
        unshard()
        try:
            yield unwrapped.policy
        finally:
            wrapped.reshard()
        return
    yield unwrapped.policy
