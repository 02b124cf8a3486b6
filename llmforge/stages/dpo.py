"""Direct preference optimisation through TRL's DPOTrainer (and its loss variants: ipo, hinge, robust...).

The reference model is the policy's starting point unless `dpo.ref_model` names
another: for full training a frozen copy; for LoRA none at all (TRL wraps the model
and runs the reference with the adapters disabled). Pairs are handed to TRL as
conversations, templated by the model's own chat template.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from llmforge.config.schema import PAIR_FORMATS, RunConfig, Section
from llmforge.config.stages import Cost, Footprint, StageSpec
from llmforge.stages.common import (
    ADAPTER_TYPES,
    accuracy_eval,
    anchor_start,
    capped_eval,
    chunked_by_trl,
    held_out_curve,
    parent_of,
    trainer_adapter,
)

if TYPE_CHECKING:
    from llmforge.engine.parts import StageParts
    from llmforge.registry import LoadedModel

CONVERSATION_COLUMNS = ["prompt", "chosen", "rejected"]


def reference_model(cfg: RunConfig, policy: LoadedModel, name: str | None) -> tuple[Any, dict[str, Any] | None]:
    """(frozen reference, its lineage entry): a copy of the start, or the model `name` names."""
    from llmforge.registry import load_model

    if name is None or name == cfg.model.name:
        return copy.deepcopy(policy.model), None
    ref = load_model(cfg.model.model_copy(update={"name": name, "tokenizer": None}))
    return ref.model, {**parent_of(ref.source), "role": "reference"}


def offline_preference_parts(cfg: RunConfig, ref_name: str | None, trainer_class: Any, args_class: Any,
                             args: dict[str, Any], shape: Callable[[Any], Any] = lambda rows: rows) -> StageParts:
    """What dpo and kto share: the policy, its reference, the preference pairs (`shape` turns them into the
    rows the trainer reads) and exact match on held-out prompts after training."""
    from llmforge.data.preference import prepare_preference_data
    from llmforge.engine.adapters import quantization_kwargs
    from llmforge.engine.parts import StageParts
    from llmforge.registry import load_model

    loaded = load_model(cfg.model, **quantization_kwargs(cfg.adapter))
    anchor_start(cfg, loaded)
    parents = [parent_of(loaded.source)]
    kwargs: dict[str, Any] = {}
    other = ref_name is not None and ref_name != cfg.model.name
    if cfg.adapter.type not in ADAPTER_TYPES or other:  # LoRA runs need none of their start: adapters off
        kwargs["ref_model"], ref_parent = reference_model(cfg, loaded, ref_name)
        parents += [ref_parent] if ref_parent else []
    peft, summary = trainer_adapter(cfg, loaded)
    kwargs.update(peft)
    data = prepare_preference_data(cfg.data, loaded.tokenizer, cfg.seed, cfg.stage)
    held_out = capped_eval(data.eval, cfg)
    return StageParts(
        model=loaded.model,
        tokenizer=loaded.tokenizer,
        train_dataset=shape(data.train.select_columns(CONVERSATION_COLUMNS)),
        eval_dataset=shape(held_out.select_columns(CONVERSATION_COLUMNS)) if held_out is not None else None,
        trainer_class=trainer_class,
        args_class=args_class,
        args_extra={**args, "max_length": cfg.data.max_length, "disable_dropout": True, "dataset_num_proc": None},
        trainer_kwargs=kwargs,
        parents=parents,
        data={"fingerprints": data.fingerprints, **data.stats, "accuracy_prompts": len(data.accuracy)},
        model_info=summary,
        layer_class=loaded.family.decoder_layer or None,
        final_eval=accuracy_eval(data.accuracy) if data.accuracy else None,
        language_model=False,
        callbacks=held_out_curve(cfg, loaded, data.accuracy),
    )


DPO_LOSSES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sigmoid_norm")


class ReferenceOptions(Section):
    """What the offline preference stages (dpo, kto) share: how far from which reference the policy may move."""

    beta: float = Field(0.1, gt=0.0, description="strength of the pull towards the reference model")
    ref_model: str | None = Field(
        None, description="reference model (any model.name); default: the policy's start. LoRA runs use the "
        "base with adapters off, no second copy")
    precompute_ref: bool = Field(
        False, description="score the data with the reference once before training, then free it")


class DPOOptions(ReferenceOptions):
    loss_type: Literal[DPO_LOSSES] = Field("sigmoid", description="TRL DPO loss: " + ", ".join(DPO_LOSSES))
    label_smoothing: float = Field(0.0, ge=0.0, lt=0.5, description="robust/exo: assumed share of flipped labels")
    sft_weight: float = Field(
        0.0, ge=0.0, description="add this much NLL loss on the chosen answers (RPO), which keeps their "
        "likelihood from falling")


def build(cfg: RunConfig) -> StageParts:
    from trl import DPOConfig, DPOTrainer

    options = cfg.dpo
    losses, weights = [options.loss_type], [1.0]
    if options.sft_weight > 0:
        losses.append("sft")
        weights.append(options.sft_weight)
    args = {"beta": options.beta, "loss_type": losses, "loss_weights": weights,
            "label_smoothing": options.label_smoothing, "precompute_ref_log_probs": options.precompute_ref}
    return offline_preference_parts(cfg, options.ref_model, DPOTrainer, DPOConfig, args)


def preference_footprint(cfg: RunConfig) -> Footprint:
    """Chosen and rejected (or a completion and its KL partner) through the policy, and the reference: the base
    with the adapter off for LoRA, a frozen copy for full training, or the model dpo.ref_model names."""
    named = cfg.options().ref_model
    other = named is not None and named != cfg.model.name
    lora = cfg.adapter.type in ADAPTER_TYPES
    return Footprint(sequences_per_row=2, reference="none" if other else "adapter" if lora else "copy",
                     frozen_models=(named,) if other else (), loss_kernel="trl")


def offline_preference_spec() -> dict[str, Any]:
    """What dpo and kto declare alike: the keys they read besides their own section, pair rows in, compared with
    the model they started from, and their cost (a policy and a reference pass per pair; kto's is dpo's, not
    measured on its own)."""
    return {"uses": ("adapter", "eval", "data.train", "data.eval", "data.eval_fraction", "data.max_length",
                     "data.truncation", "data.cache_dir"),
            "formats": PAIR_FORMATS, "compared_with_start": True, "cost": Cost(efficiency=0.52, passes=3.0),
            "check": chunked_by_trl, "footprint": preference_footprint}


SPEC = StageSpec(
    name="dpo",
    order=40,
    summary="direct preference optimisation (and IPO, hinge, robust, RPO...) through TRL's DPOTrainer",
    options=DPOOptions,
    build=build,
    headline=("eval_accuracy", "eval_rewards/accuracies", "eval_rewards/margins"),
    **offline_preference_spec(),
)
