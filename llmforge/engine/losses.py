"""How a causal LM's next-token loss is computed: in chunks (the default) or from the whole logits.

The logits of a real vocabulary dominate memory at real sizes: 2,048 tokens of Qwen2.5's 151,936-token
vocabulary are 1.2 GiB in float32, and the plain loss holds them, their log-softmax and their gradient at
once. With `train.chunked_loss` (the default) the pretrain and SFT trainers compute the loss with
kernels/vocab.py's chunked kernel from the backbone's output, the head projecting one position only; with
it off, the model's own cross-entropy over the whole logits (transformers' Trainer's loss), for comparison
or for a model the chunked path does not cover. TRL's DPO, KTO and GRPO trainers chunk with TRL's own
fused head. Under DeepSpeed ZeRO-3 the head's weight is partitioned outside its module's forward, so the
loss there is the model's own, over the whole logits.
"""

from __future__ import annotations

from typing import Any

from transformers import Trainer

from llmforge.kernels.vocab import NextTokenLoss, partitioned


def _chunked_loss(trainer: Any, model: Any, inputs: dict[str, Any], return_outputs: bool,
                  num_items_in_batch: Any) -> Any:
    """Trainer.compute_loss's contract with the chunked loss: normalised by the tokens of the whole accumulated
    batch (num_items_in_batch) and scaled by the processes when those tokens were counted across them."""
    if getattr(trainer, "_next_token_loss", None) is None:
        trainer._next_token_loss = NextTokenLoss(trainer.model)
    if partitioned(trainer._next_token_loss.head.weight):
        return _whole_logits_loss(trainer, model, inputs, return_outputs, num_items_in_batch)
    loss = trainer._next_token_loss(model, inputs, num_items_in_batch)
    if trainer.args.average_tokens_across_devices and num_items_in_batch is not None:
        loss = loss * (trainer.accelerator.num_processes // trainer.get_tp_size())
    return (loss, {"loss": loss}) if return_outputs else loss


def _whole_logits_loss(trainer: Any, model: Any, inputs: dict[str, Any], return_outputs: bool,
                       num_items_in_batch: Any) -> Any:
    """transformers' Trainer's loss: the model's own cross-entropy over the whole logits."""
    return Trainer.compute_loss(trainer, model, {**inputs, "use_cache": False}, return_outputs, num_items_in_batch)


class ChunkedLossTrainer(Trainer):
    """transformers' Trainer with the chunked next-token loss (the pretrain stage)."""

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        return _chunked_loss(self, model, inputs, return_outputs, num_items_in_batch)


def sft_trainer(chunked: bool) -> type:
    """TRL's SFTTrainer with the chunked loss (its entropy and token-accuracy metrics left out), or with the
    model's own cross-entropy over the whole logits (`train.chunked_loss: false`)."""
    from trl import SFTTrainer

    class ChunkedSFTTrainer(SFTTrainer):
        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            return _chunked_loss(self, model, inputs, return_outputs, num_items_in_batch)

    class FullLogitsSFTTrainer(SFTTrainer):
        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            return _whole_logits_loss(self, model, inputs, return_outputs, num_items_in_batch)

    return ChunkedSFTTrainer if chunked else FullLogitsSFTTrainer
