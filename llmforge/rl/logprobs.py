"""Log-probabilities and entropy of a response's tokens, computed at the response positions only.

A rollout row is a left-padded prompt followed by the response; only the T positions that predict response
tokens are scored, so the LM head runs over B x T positions rather than B x (prompt + T). With `chunked`
(`train.chunked_loss`, the default) the head runs through kernels/vocab.py's chunked kernel, over the tokens
the mask keeps, and the [positions x vocabulary] logits never exist; without it the head's logits at the
response positions are formed once and log-softmaxed (the reference definition, `response_logprobs` in
rl/models.py, applied to fewer positions), as they are for a head that DeepSpeed ZeRO-3 partitions. Both scale
the logits the way the model's own head does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from llmforge.kernels.vocab import chunked_logprobs, head_scaling, partitioned
from llmforge.rl.core import entropy_from_logits


def backbone_of(model: nn.Module) -> nn.Module:
    """The transformer body of a causal LM or a sequence-classification model (PEFT-wrapped or not)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.base_model


def scaled_logits(hidden: torch.Tensor, head: nn.Module, config: Any) -> torch.Tensor:
    """The head's logits as the model's own forward forms them (Gemma 2's softcap, a logit scale)."""
    softcap, scale = head_scaling(config)
    logits = head(hidden).float() * scale
    return softcap * torch.tanh(logits / softcap) if softcap else logits


def token_logprobs(hidden: torch.Tensor, head: nn.Module, config: Any, targets: torch.Tensor, mask: torch.Tensor,
                   temperature: float, chunked: bool, with_entropy: bool = False,
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(log p(target), entropy or None), [B, T] each, 0 where `mask` is 0; `hidden` [B, T, h] are the hidden
    states that predict `targets` [B, T]."""
    if not chunked or partitioned(head.weight):  # a ZeRO-3 head runs as a module, its hooks gathering it
        logits = scaled_logits(hidden, head, config) / temperature
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        entropy = entropy_from_logits(logits) * mask if with_entropy else None
        return logprobs * mask, entropy
    keep = mask.bool()
    logprobs, entropy = chunked_logprobs(hidden[keep], head, config, targets[keep], temperature, with_entropy)
    blank = torch.zeros(mask.shape, dtype=torch.float32, device=hidden.device)
    spread = blank.masked_scatter(keep, logprobs)  # stays connected to the graph even when nothing is kept
    return spread, (blank.masked_scatter(keep, entropy) if entropy is not None else None)


def response_hidden(backbone: nn.Module, inputs: dict[str, torch.Tensor], prompt_width: int) -> torch.Tensor:
    """Hidden states at the positions that predict response tokens: from the prompt's last token to the one
    before the end (`at_responses` of rl/models.py, on hidden states instead of logits)."""
    hidden = backbone(**inputs, use_cache=False).last_hidden_state
    return hidden[:, prompt_width - 1:-1]
