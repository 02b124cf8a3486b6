"""Causal-LM pretraining: packed blocks of the training corpus, next-token loss."""

from __future__ import annotations

from llmforge.config.schema import RunConfig
from llmforge.data.packing import BlockCollator
from llmforge.data.pretrain import prepare_pretrain_data
from llmforge.errors import UserError
from llmforge.registry import load_model
from llmforge.stages.base import StageParts
from llmforge.stages.common import capped_eval, model_summary, parent_of


class PretrainStage:
    name = "pretrain"

    def build(self, cfg: RunConfig) -> StageParts:
        if cfg.adapter.type != "none":
            raise UserError(f"adapter.type={cfg.adapter.type}: pretraining trains the whole model in this "
                            "version; remove the adapter section (adapters come with the sft stage).")
        loaded = load_model(cfg.model)
        data = prepare_pretrain_data(cfg.data, loaded.tokenizer, cfg.seed, cfg.train.max_steps)
        eval_data = capped_eval(data.eval, cfg)
        return StageParts(
            model=loaded.model,
            tokenizer=loaded.tokenizer,
            train_dataset=data.train,
            eval_dataset=eval_data,
            data_collator=BlockCollator(loaded.tokenizer.pad_token_id),
            parents=[parent_of(loaded.source)],
            data={"fingerprints": data.fingerprints, **data.stats},
            model_info=model_summary(loaded),
            layer_class=loaded.family.decoder_layer or None,
        )
