"""PPO against a reward model and/or verifiable rewards, on our own loop (llmforge.rl).

The stage loads the four models through the registry: the policy (full or LoRA), its
reference (the LoRA base with adapters off, else a frozen copy of the start), the value
model (from `ppo.value_model`, the reward model, or the policy's start, with a one-score
head) and the reward model (`ppo.reward_model`, whose saved score statistics rescale its
scores). The engine drives the returned PPOTrainer like any Trainer.
"""

from __future__ import annotations

import copy
from typing import Any

from llmforge.config.schema import RunConfig
from llmforge.data.chat import encode_prompt
from llmforge.data.preference_data import prepare_prompt_data
from llmforge.distributed.strategy import accelerator_for
from llmforge.engine.adapters import apply_adapter, quantization_kwargs
from llmforge.errors import UserError
from llmforge.eval.reward import load_reward_model, saved_statistics
from llmforge.inference import stops_of
from llmforge.precision import current_device
from llmforge.registry import load_model
from llmforge.rl.rewards import Scorer
from llmforge.rl.sampling import choose_engine
from llmforge.rl.trainer import PPOTrainer
from llmforge.stages.base import StageParts
from llmforge.stages.common import (
    ADAPTER_TYPES,
    accuracy_eval,
    anchor_start,
    check_reward_columns,
    load_side_model,
    model_summary,
    parent_of,
)


def same_vocabulary(policy_tokenizer: Any, other_tokenizer: Any, name: str, role: str) -> None:
    """The value model reads the policy's token ids, so every policy token must mean the same there."""
    theirs = other_tokenizer.get_vocab()
    if any(theirs.get(token) != index for token, index in policy_tokenizer.get_vocab().items()):
        raise UserError(f"ppo.{role}: '{name}' uses a different tokenizer from the policy, and the {role} reads "
                        "the policy's tokens. Start it from the policy's family (e.g. an rm run trained from "
                        "the SFT model), or set ppo.value_model to the policy's start, or to `policy` (a value head on "
                        "the policy).")


def encoded_prompts(cfg: RunConfig, tokenizer: Any) -> tuple[Any, list[dict], dict[str, Any], int]:
    prompts, accuracy, fingerprints = prepare_prompt_data(cfg.data, "ppo")
    check_reward_columns("ppo", cfg.ppo.reward_functions, {"answer": prompts["answer"]})
    limit = cfg.data.max_length - cfg.ppo.max_new_tokens
    encoded = prompts.map(lambda row: {"prompt_ids": encode_prompt(tokenizer, row["prompt"])})
    kept = encoded.filter(lambda row: 0 < len(row["prompt_ids"]) <= limit)
    if len(kept) == 0:
        raise UserError(f"data.train: every prompt is longer than data.max_length - ppo.max_new_tokens = {limit} "
                        "tokens. Raise data.max_length or lower ppo.max_new_tokens.")
    return kept, accuracy, fingerprints, len(encoded) - len(kept)


VALUE_HEAD_ON_POLICY = "policy"


class PPOStage:
    name = "ppo"

    def build(self, cfg: RunConfig) -> StageParts:
        o = cfg.ppo
        loaded = load_model(cfg.model, **quantization_kwargs(cfg.adapter))
        anchor_start(cfg, loaded)
        tokenizer = loaded.tokenizer
        prompts, accuracy, fingerprints, dropped = encoded_prompts(cfg, tokenizer)
        lora = cfg.adapter.type in ADAPTER_TYPES
        ref_model = None if lora else copy.deepcopy(loaded.model)
        policy = apply_adapter(loaded.model, cfg.adapter, loaded.family)

        parents = [parent_of(loaded.source)]
        reward_model, stats = None, {}
        if o.reward_model:
            reward_model = load_reward_model(o.reward_model, "cpu", like=cfg.model)  # the trainer places it
            stats = saved_statistics(reward_model) if o.normalize_reward else {}
            parents.append({**parent_of(reward_model.source), "role": "reward_model"})
        value_name = VALUE_HEAD_ON_POLICY if o.advantage_estimator == "rloo" else (
            o.value_model or o.reward_model or cfg.model.name)
        value_model, value_trainable = None, 0
        if value_name != VALUE_HEAD_ON_POLICY:
            value = load_side_model(cfg, value_name)
            same_vocabulary(tokenizer, value.tokenizer, value_name, "value_model")
            value.model.config.pad_token_id = tokenizer.pad_token_id  # its head pools at the last non-pad token
            value_model = apply_adapter(value.model, cfg.adapter, value.family, task_type="SEQ_CLS")
            value_trainable = model_summary(value, value_model)["trainable_parameters"]
            parents.append({**parent_of(value.source), "role": "value_model"})
        scorer = Scorer(reward_model, stats, tuple(o.reward_functions), o.reward_weights)
        # a value model that is the reward model predicts raw scores: put them on the rescaled rewards' scale
        value_scale = (stats["mean"], max(stats["std"], 1e-8)) if value_name == o.reward_model and stats else (0.0, 1.0)
        layer_class = loaded.family.decoder_layer or None
        summary = {**model_summary(loaded, policy), "adapter": cfg.adapter.type,
                   "value_model": value_name, "value_trainable_parameters": value_trainable}
        return StageParts(
            model=policy,
            tokenizer=tokenizer,
            train_dataset=prompts,
            trainer_class=PPOTrainer,
            # built after TrainingArguments, whose set-up resets accelerate's state
            trainer_kwargs={"make_accelerator": lambda: accelerator_for(cfg, layer_class),
                            "value_model": value_model, "ref_model": ref_model,
                            "scorer": scorer, "options": o, "stop_ids": stops_of(loaded),
                            "value_scale": value_scale,
                            "engine": choose_engine(o.generation, current_device(), cfg.distributed.strategy)},
            parents=parents,
            data={"fingerprints": fingerprints, "train_prompts": len(prompts), "dropped_long_prompts": dropped,
                  "accuracy_prompts": len(accuracy), "reward_stats": stats},
            model_info=summary,
            layer_class=layer_class,
            final_eval=accuracy_eval(accuracy) if accuracy else None,
            language_model=False,
        )
