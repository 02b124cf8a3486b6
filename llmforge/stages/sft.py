"""Supervised fine-tuning through TRL's SFTTrainer: full, freeze, LoRA, DoRA, QLoRA.

llmforge templates and masks the data itself (see data.chat) and hands TRL
`input_ids` + `labels`; TRL packs them padding-free (position ids restart per sample,
so packed samples never attend to each other).
"""

from __future__ import annotations

from typing import Any

from trl import SFTConfig, SFTTrainer

from llmforge.config.schema import RunConfig
from llmforge.data.sft import prepare_sft_data
from llmforge.engine.adapters import apply_adapter, quantization_kwargs
from llmforge.registry import load_model
from llmforge.stages.base import StageParts
from llmforge.stages.common import accuracy_eval, anchor_start, model_summary, parent_of


class SFTStage:
    name = "sft"

    def build(self, cfg: RunConfig) -> StageParts:
        loaded = load_model(cfg.model, **quantization_kwargs(cfg.adapter))
        anchor_start(cfg, loaded)
        model = apply_adapter(loaded.model, cfg.adapter, loaded.family)
        data = prepare_sft_data(cfg.data, loaded.tokenizer, cfg.seed)
        args: dict[str, Any] = {
            "max_length": cfg.data.max_length,
            "packing": cfg.data.packing,
            "packing_strategy": "bfd",
            "padding_free": cfg.data.packing,
            "eval_packing": cfg.data.packing,
            "assistant_only_loss": False,  # labels already carry the mask (data.train_on)
            "completion_only_loss": False,
            "dataset_num_proc": None,
        }
        return StageParts(
            model=model,
            tokenizer=loaded.tokenizer,
            train_dataset=data.train,
            eval_dataset=data.eval,
            trainer_class=SFTTrainer,
            args_class=SFTConfig,
            args_extra=args,
            parents=[parent_of(loaded.source)],
            data={"fingerprints": data.fingerprints, **data.stats, "accuracy_prompts": len(data.accuracy)},
            model_info={**model_summary(loaded, model), "adapter": cfg.adapter.type},
            layer_class=loaded.family.decoder_layer or None,
            final_eval=accuracy_eval(data.accuracy) if data.accuracy else None,
        )
