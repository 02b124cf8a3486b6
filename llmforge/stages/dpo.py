"""Direct preference optimisation through TRL's DPOTrainer (and its loss variants: ipo, hinge, robust...).

The reference model is the policy's starting point unless `dpo.ref_model` names
another: for full training a frozen copy; for LoRA none at all (TRL wraps the model
and runs the reference with the adapters disabled). Pairs are handed to TRL as
conversations, templated by the model's own chat template.
"""

from __future__ import annotations

import copy
from typing import Any

from trl import DPOConfig, DPOTrainer

from llmforge.config.schema import RunConfig
from llmforge.data.preference_data import prepare_preference_data
from llmforge.engine.adapters import quantization_kwargs
from llmforge.registry import LoadedModel, load_model
from llmforge.stages.base import StageParts
from llmforge.stages.common import (
    ADAPTER_TYPES,
    accuracy_eval,
    anchor_start,
    capped_eval,
    parent_of,
    trainer_adapter,
)

CONVERSATION_COLUMNS = ["prompt", "chosen", "rejected"]


def reference_model(cfg: RunConfig, policy: LoadedModel) -> tuple[Any, dict[str, Any] | None]:
    """(frozen reference, its lineage entry): a copy of the start, or the model `dpo.ref_model` names."""
    if cfg.dpo.ref_model is None or cfg.dpo.ref_model == cfg.model.name:
        return copy.deepcopy(policy.model), None
    ref = load_model(cfg.model.model_copy(update={"name": cfg.dpo.ref_model, "tokenizer": None}))
    return ref.model, {**parent_of(ref.source), "role": "reference"}


class DPOStage:
    name = "dpo"

    def build(self, cfg: RunConfig) -> StageParts:
        loaded = load_model(cfg.model, **quantization_kwargs(cfg.adapter))
        anchor_start(cfg, loaded)
        parents = [parent_of(loaded.source)]
        kwargs: dict[str, Any] = {}
        if cfg.adapter.type not in ADAPTER_TYPES:  # LoRA runs need none: the base with adapters off
            kwargs["ref_model"], ref_parent = reference_model(cfg, loaded)
            parents += [ref_parent] if ref_parent else []
        peft, summary = trainer_adapter(cfg, loaded)
        kwargs.update(peft)
        data = prepare_preference_data(cfg.data, loaded.tokenizer, cfg.seed, "dpo")
        train = data.train.select_columns(CONVERSATION_COLUMNS)
        held_out = capped_eval(data.eval, cfg)
        held_out = held_out.select_columns(CONVERSATION_COLUMNS) if held_out is not None else None
        losses, weights = [cfg.dpo.loss_type], [1.0]
        if cfg.dpo.sft_weight > 0:
            losses.append("sft")
            weights.append(cfg.dpo.sft_weight)
        args = {"beta": cfg.dpo.beta, "loss_type": losses, "loss_weights": weights,
                "label_smoothing": cfg.dpo.label_smoothing,
                "max_length": cfg.data.max_length, "precompute_ref_log_probs": cfg.dpo.precompute_ref,
                "disable_dropout": True, "dataset_num_proc": None}
        return StageParts(
            model=loaded.model,
            tokenizer=loaded.tokenizer,
            train_dataset=train,
            eval_dataset=held_out,
            trainer_class=DPOTrainer,
            args_class=DPOConfig,
            args_extra=args,
            trainer_kwargs=kwargs,
            parents=parents,
            data={"fingerprints": data.fingerprints, **data.stats, "accuracy_prompts": len(data.accuracy)},
            model_info=summary,
            layer_class=loaded.family.decoder_layer or None,
            final_eval=accuracy_eval(data.accuracy) if data.accuracy else None,
            language_model=False,
        )
