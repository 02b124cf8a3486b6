"""Supervised fine-tuning through TRL's SFTTrainer: full, freeze, LoRA, DoRA, QLoRA.

llmforge templates and masks the data itself (see data.chat) and hands TRL
`input_ids` + `labels`, batched as data/batching.py decides for the device: packed
padding-free (position ids restart per sample, so packed samples never attend to each
other), grouped by length, or padded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmforge.config.schema import SFT_FORMATS, RunConfig
from llmforge.config.stages import Cost, StageSpec
from llmforge.stages.common import accuracy_eval, anchor_start, model_summary, parent_of

if TYPE_CHECKING:
    from llmforge.engine.parts import StageParts


def build(cfg: RunConfig) -> StageParts:
    from trl import SFTConfig

    from llmforge.data.batching import (
        attention_for,
        grouped_order,
        padded_tokens,
        sft_batching,
        trainer_arguments,
    )
    from llmforge.data.sft import prepare_sft_data, row_lengths
    from llmforge.engine.adapters import apply_adapter, quantization_kwargs
    from llmforge.engine.losses import sft_trainer
    from llmforge.engine.parts import StageParts
    from llmforge.precision import current_device
    from llmforge.registry import load_model

    device = current_device()
    batching = sft_batching(cfg.data.packing, cfg.model.attn_implementation, device)
    attention = attention_for(batching, cfg.model.attn_implementation, device)
    model_cfg = cfg.model.model_copy(update={"attn_implementation": attention})
    loaded = load_model(model_cfg, **quantization_kwargs(cfg.adapter))
    anchor_start(cfg, loaded)
    model = apply_adapter(loaded.model, cfg.adapter, loaded.family)
    data = prepare_sft_data(cfg.data, loaded.tokenizer, cfg.seed)
    train = data.train
    if batching == "grouped":
        lengths = row_lengths(train)
        order = grouped_order(lengths, cfg.train.micro_batch_size, cfg.seed)
        train = train.select(order)
        data.stats["padded_tokens_per_epoch"] = padded_tokens(lengths, order, cfg.train.micro_batch_size)
    args: dict[str, Any] = {
        "max_length": cfg.data.max_length,
        **trainer_arguments(batching),
        "assistant_only_loss": False,  # labels already carry the mask (data.train_on)
        "completion_only_loss": False,
        "dataset_num_proc": None,
    }
    return StageParts(
        model=model,
        tokenizer=loaded.tokenizer,
        train_dataset=train,
        eval_dataset=data.eval,
        trainer_class=sft_trainer(cfg.train.chunked_loss),
        args_class=SFTConfig,
        args_extra=args,
        parents=[parent_of(loaded.source)],
        data={"fingerprints": data.fingerprints, **data.stats, "accuracy_prompts": len(data.accuracy)},
        model_info={**model_summary(loaded, model), "adapter": cfg.adapter.type, "batching": batching,
                    "attention": attention},
        layer_class=loaded.family.decoder_layer or None,
        final_eval=accuracy_eval(data.accuracy) if data.accuracy else None,
    )


SPEC = StageSpec(
    name="sft",
    order=20,
    summary="supervised fine-tuning on conversations or text: full, freeze, LoRA, DoRA, QLoRA",
    uses=("adapter", "eval", "data.train", "data.eval", "data.eval_fraction", "data.max_length", "data.packing",
          "data.truncation", "data.train_on", "data.cache_dir"),
    formats=SFT_FORMATS,
    build=build,
    headline=("eval_loss", "eval_accuracy"),
    cost=Cost(efficiency=0.072),
)
