"""Next-token log-probabilities over a large vocabulary without the [tokens x vocabulary] logits.

Rows of hidden states are projected through the LM head a chunk at a time (CHUNK_LOGITS values per chunk,
whatever the vocabulary), reduced with torch's own logsumexp and freed; the backward pass forms each chunk's
logits again and turns them into their gradient in place (softmax minus the target's one-hot), then into
the hidden states' and the head's gradients with two matmuls. It is the algorithm of TRL's fused LM head,
Liger's and Cut Cross-Entropy's kernels, on torch's vectorised kernels with three passes over a chunk instead
of TRL's CPU fallback's dozen: on a 2-core CPU, one step of full SFT of the Qwen2.5-0.5B shape at 2 x 512
tokens spent 10 of its 25 seconds in TRL's fallback (docs/performance.md has this kernel's figures). A
softcapped head (Gemma 2) goes through TRL's kernel, which implements the cap.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

CHUNK_LOGITS = 1 << 26  # logits formed at once (256 MiB in float32): 441 tokens of a 151,936-token vocabulary


def partitioned(param: torch.Tensor) -> bool:
    """Whether DeepSpeed ZeRO-3 partitions this parameter. Outside its module's forward it holds no data, and its
    gradient reaches the optimizer through that module's hooks only, so the kernels here, which read the head's
    weight directly, must not be given it: callers run the head as a module instead (whole logits)."""
    return hasattr(param, "ds_id")


class ChunkedLogProbs(torch.autograd.Function):
    """(log p(target), entropy or None) of softmax(scale x (hidden @ weight.T + bias)), per row of `hidden`."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                targets: torch.Tensor, scale: float, with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        ctx.set_materialize_grads(False)
        rows = max(1, CHUNK_LOGITS // weight.shape[0])
        count = hidden.shape[0]
        logprobs = torch.empty(count, dtype=torch.float32, device=hidden.device)
        log_z = torch.empty_like(logprobs)
        entropy = torch.empty_like(logprobs) if with_entropy else None
        for start in range(0, count, rows):
            end = min(start + rows, count)
            z = _logits(hidden[start:end], weight, bias, scale)
            target = z.gather(1, targets[start:end, None]).squeeze(1)
            top = z.amax(dim=-1, keepdim=True)
            e = z.sub_(top).exp_() if entropy is None else (z - top).exp_()  # in place unless z is needed
            total = e.sum(dim=-1)
            log_z[start:end] = top.squeeze(1) + torch.log(total)
            logprobs[start:end] = target - log_z[start:end]
            if entropy is not None:  # H = log Z - sum p z
                entropy[start:end] = log_z[start:end] - (e * z).sum(-1) / total
        ctx.save_for_backward(hidden, weight, bias, targets, log_z, entropy)
        ctx.scale, ctx.rows = scale, rows
        return logprobs, entropy

    @staticmethod
    def backward(ctx: Any, grad_logprobs: torch.Tensor | None, grad_entropy: torch.Tensor | None) -> tuple:
        hidden, weight, bias, targets, log_z, entropy = ctx.saved_tensors
        grads = _Gradients(hidden, weight, bias, ctx.needs_input_grad[:3])
        for start in range(0, hidden.shape[0], ctx.rows):
            end = min(start + ctx.rows, hidden.shape[0])
            z = _logits(hidden[start:end], weight, bias, ctx.scale)
            g = grad_logprobs[start:end, None] if grad_logprobs is not None else None
            if grad_entropy is not None:  # dH/dz = -p (log p + H), in z's buffer
                log_p = z.sub_(log_z[start:end, None])
                p = torch.exp(log_p)
                grad = log_p.add_(entropy[start:end, None]).mul_(p).mul_(-grad_entropy[start:end, None])
                if g is not None:
                    grad.sub_(p.mul_(g))
            else:  # d log p_t / dz = onehot(t) - p, in z's buffer
                grad = z.sub_(log_z[start:end, None]).exp_().mul_(-g)
            if g is not None:
                grad[torch.arange(end - start, device=grad.device), targets[start:end]] += g.squeeze(1)
            grad.mul_(ctx.scale)
            grads.add(grad, hidden, weight, start, end)
        return (*grads.cast(hidden, weight, bias), None, None, None)


class _Gradients:
    """The float32 gradients of the hidden states, the head's weight and its bias that are asked for, summed
    chunk by chunk from each chunk's d loss / d logits."""

    def __init__(self, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 needed: tuple[bool, ...]) -> None:
        def zeros(like: torch.Tensor | None, need: bool) -> torch.Tensor | None:
            return torch.zeros(like.shape, dtype=torch.float32, device=like.device) if need and like is not None \
                else None

        self.hidden, self.weight, self.bias = (zeros(t, n) for t, n in zip((hidden, weight, bias), needed,
                                                                             strict=True))

    def add(self, grad: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor, start: int, end: int) -> None:
        if self.hidden is not None:
            self.hidden[start:end] = grad @ weight.float()
        if self.weight is not None:
            self.weight.addmm_(grad.t(), hidden[start:end].float())
        if self.bias is not None:
            self.bias += grad.sum(0)

    def present(self) -> list[torch.Tensor | None]:
        return [self.hidden, self.weight, self.bias]

    def cast(self, *like: torch.Tensor | None) -> list[torch.Tensor | None]:
        return [None if g is None or t is None else g.to(t.dtype) for g, t in zip(self.present(), like, strict=True)]


class ChunkedNextTokenLoss(torch.autograd.Function):
    """-sum(log p(target)) / divisor of softmax(scale x (hidden @ weight.T + bias)). The gradient of such a loss
    is known in the forward pass, so each chunk's is formed there (softmax minus one-hot, in the logits'
    buffer) and turned into the hidden states' and head's gradients at once, as Liger's fused linear
    cross-entropy does: three matmuls in all, the same as the whole logits, and no recomputation."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                targets: torch.Tensor, scale: float, divisor: float) -> torch.Tensor:
        rows = max(1, CHUNK_LOGITS // weight.shape[0])
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grads = _Gradients(hidden, weight, bias, ctx.needs_input_grad[:3])
        for start in range(0, hidden.shape[0], rows):
            end = min(start + rows, hidden.shape[0])
            z = _logits(hidden[start:end], weight, bias, scale)
            target = z.gather(1, targets[start:end, None]).squeeze(1)
            top = z.amax(dim=-1, keepdim=True)
            p = z.sub_(top).exp_()
            norm = p.sum(dim=-1, keepdim=True)
            total -= (target - top.squeeze(1) - torch.log(norm.squeeze(1))).sum()
            grad = p.div_(norm)  # softmax; minus the one-hot, over the divisor: d loss / d z
            grad[torch.arange(end - start, device=grad.device), targets[start:end]] -= 1.0
            grad.mul_(scale / divisor)
            grads.add(grad, hidden, weight, start, end)
        ctx.save_for_backward(*(g for g in grads.present() if g is not None))
        ctx.present = tuple(g is not None for g in grads.present())
        ctx.like = (hidden.dtype, weight.dtype, bias.dtype if bias is not None else None)
        return total / divisor

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple:
        saved = iter(ctx.saved_tensors)
        grads = [(next(saved) * grad_loss).to(dtype) if present else None
                 for present, dtype in zip(ctx.present, ctx.like, strict=True)]
        return (*grads, None, None, None)


def _logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, scale: float) -> torch.Tensor:
    z = hidden.to(weight.dtype) @ weight.t()
    if bias is not None:
        z = z + bias
    z = z.float()
    return z.mul_(scale) if scale != 1.0 else z


def head_scaling(config: Any) -> tuple[float | None, float]:
    """(softcap, logit scale) of a model's LM head, as its own forward applies them."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    scale = getattr(text, "logit_scale", None)
    return getattr(text, "final_logit_softcapping", None), 1.0 if scale is None else float(scale)


def chunked_logprobs(hidden: torch.Tensor, head: nn.Module, config: Any, targets: torch.Tensor,
                     temperature: float = 1.0, with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(log p(target), entropy or None) for rows of `hidden` [N, h] through `head`, at `temperature`."""
    weight, bias = head.weight, getattr(head, "bias", None)
    from torch.distributed.tensor import DTensor

    if isinstance(weight, DTensor):  # an FSDP2-sharded head used outside its module's forward: gather it
        weight = weight.full_tensor()
        bias = bias.full_tensor() if isinstance(bias, DTensor) else bias
    softcap, scale = head_scaling(config)
    if softcap:
        from trl.kernels import ChunkedLogProbFunction

        wanted = ("log_probs", "entropy") if with_entropy else ("log_probs",)
        logprobs, entropy, *_ = ChunkedLogProbFunction.apply(hidden, weight, bias, targets, temperature, 32_768,
                                                              softcap, scale, wanted)
        return logprobs, entropy
    return ChunkedLogProbs.apply(hidden, weight, bias, targets, scale / temperature, with_entropy)


def causal_parts(model: nn.Module) -> tuple[nn.Module, nn.Module, Any]:
    """(backbone, LM head, config) of a causal LM, a PEFT model around one, or either under a DDP/FSDP/DeepSpeed
    wrapper (`module`). The backbone's output is the final, normed hidden state the head reads."""
    while hasattr(model, "module") and not hasattr(model, "get_output_embeddings"):
        model = model.module
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    return causal.base_model, causal.get_output_embeddings(), causal.config


class NextTokenLoss:
    """The next-token loss of a model run through its own forward (so a DDP, FSDP or DeepSpeed wrapper around
    it does its work), with the head projecting one position only (`logits_to_keep=1`) and the loss computed
    here from the backbone's output, caught with a forward hook, in chunks."""

    def __init__(self, model: nn.Module) -> None:
        self.backbone, self.head, self.config = causal_parts(model)
        self._hidden: torch.Tensor | None = None
        self.backbone.register_forward_hook(self._catch)

    def _catch(self, module: nn.Module, args: Any, output: Any) -> None:
        self._hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]

    def __call__(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        labels = inputs["labels"]
        forward = {key: value for key, value in inputs.items() if key != "labels"}
        model(**forward, logits_to_keep=1, use_cache=False)
        hidden, self._hidden = self._hidden, None
        shift = labels[:, 1:]
        keep = shift != -100
        count = max(float(keep.sum() if num_items_in_batch is None else num_items_in_batch), 1.0)
        weight, bias = self.head.weight, getattr(self.head, "bias", None)
        softcap, scale = head_scaling(self.config)
        from torch.distributed.tensor import DTensor

        if softcap or isinstance(weight, DTensor):  # TRL's kernel caps; a sharded head: the per-token kernel
            logprobs, _ = chunked_logprobs(hidden[:, :-1][keep], self.head, self.config, shift[keep])
            return -logprobs.sum() / count
        return ChunkedNextTokenLoss.apply(hidden[:, :-1][keep], weight, bias, shift[keep], scale, count)
