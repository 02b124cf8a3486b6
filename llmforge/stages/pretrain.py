"""Causal-LM pretraining: packed blocks of the training corpus, next-token loss, the whole model trained."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmforge.config.schema import RunConfig
from llmforge.config.stages import Cost, Footprint, StageSpec
from llmforge.stages.common import capped_eval, model_summary, parent_of

if TYPE_CHECKING:
    from llmforge.engine.parts import StageParts


def build(cfg: RunConfig) -> StageParts:
    from transformers import Trainer

    from llmforge.data.packing import BlockCollator
    from llmforge.data.pretrain import prepare_pretrain_data
    from llmforge.engine.losses import ChunkedLossTrainer
    from llmforge.engine.parts import StageParts
    from llmforge.registry import load_model

    loaded = load_model(cfg.model)
    data = prepare_pretrain_data(cfg.data, loaded.tokenizer, cfg.seed, cfg.train.max_steps)
    return StageParts(
        model=loaded.model,
        tokenizer=loaded.tokenizer,
        train_dataset=data.train,
        eval_dataset=capped_eval(data.eval, cfg),
        data_collator=BlockCollator(loaded.tokenizer.pad_token_id),
        trainer_class=ChunkedLossTrainer if cfg.train.chunked_loss else Trainer,
        parents=[parent_of(loaded.source)],
        data={"fingerprints": data.fingerprints, **data.stats},
        model_info=model_summary(loaded),
        layer_class=loaded.family.decoder_layer or None,
    )


SPEC = StageSpec(
    name="pretrain",
    order=10,
    summary="next-token training of a whole model on text, packed into blocks",
    uses=("eval", "data.train", "data.eval", "data.eval_fraction", "data.max_length", "data.packing",
          "data.streaming", "data.cache_dir"),
    formats=("text",),
    build=build,
    headline=("eval_loss", "eval_perplexity"),
    samples="continuations",
    cost=Cost(efficiency=0.35),
    footprint=lambda cfg: Footprint(reloads_final="never"),  # its held-out figure is the loss, computed in place
)
