"""Group relative policy optimisation through TRL's GRPOTrainer.

Rewards come from a trained reward model (`grpo.reward_model`: an rm run, scored by
TRL with the reward model's own tokenizer and template) and/or built-in verifiable
functions (`grpo.reward_functions`), which read dataset columns such as `answer`.
Generation stops at the family's end-of-turn token as well as EOS.
"""

from __future__ import annotations

from typing import Any

from trl import GRPOConfig, GRPOTrainer

from llmforge.config.schema import RunConfig
from llmforge.data.preference_data import prepare_prompt_data
from llmforge.distributed.state import process_state
from llmforge.engine.adapters import quantization_kwargs
from llmforge.errors import UserError
from llmforge.inference import stops_of
from llmforge.precision import current_device
from llmforge.registry import load_model
from llmforge.rl.rewards import REWARD_FUNCTIONS
from llmforge.rl.sampling import choose_engine
from llmforge.stages.base import StageParts
from llmforge.stages.common import (
    ADAPTER_TYPES,
    accuracy_eval,
    anchor_start,
    check_reward_columns,
    load_side_model,
    parent_of,
    trainer_adapter,
)


def reward_sources(cfg: RunConfig, columns: dict[str, list]) -> tuple[list[Any], list[Any], list[dict]]:
    """(reward functions/models, their tokenizers, lineage entries) in the order grpo.reward_weights uses."""
    funcs, tokenizers, parents = [], [], []
    if cfg.grpo.reward_model:
        rm = load_side_model(cfg, cfg.grpo.reward_model)
        funcs.append(rm.model)
        tokenizers.append(rm.tokenizer)
        parents.append({**parent_of(rm.source), "role": "reward_model"})
    check_reward_columns("grpo", cfg.grpo.reward_functions, columns)
    for name in cfg.grpo.reward_functions:
        funcs.append(REWARD_FUNCTIONS[name])
        tokenizers.append(None)
    return funcs, tokenizers, parents


class GRPOStage:
    name = "grpo"

    def build(self, cfg: RunConfig) -> StageParts:
        g = cfg.grpo
        per_step = cfg.train.micro_batch_size * process_state().num_processes
        if per_step % g.num_generations:
            raise UserError(f"grpo.num_generations={g.num_generations} must divide the completions per step "
                            f"(train.micro_batch_size x processes = {per_step}): each prompt's group of completions "
                            "is scored together.")
        loaded = load_model(cfg.model, **quantization_kwargs(cfg.adapter))
        # TRL builds a full-training reference from the model's name: make sure that name loads these weights
        anchor_start(cfg, loaded, needed=cfg.adapter.type in ADAPTER_TYPES or g.beta > 0)
        prompts, accuracy, fingerprints = prepare_prompt_data(cfg.data, "grpo")
        funcs, reward_tokenizers, reward_parents = reward_sources(cfg, {"answer": prompts["answer"]})
        args = {"num_generations": g.num_generations, "beta": g.beta, "max_completion_length": g.max_new_tokens,
                "temperature": g.temperature, "top_p": g.top_p, "loss_type": g.loss_type,
                "scale_rewards": g.scale_rewards, "reward_weights": g.reward_weights, "disable_dropout": True,
                "generation_kwargs": {"eos_token_id": stops_of(loaded)}, "log_completions": False,
                "use_transformers_continuous_batching":
                    choose_engine(g.generation, current_device(), cfg.distributed.strategy) == "continuous"}
        peft, summary = trainer_adapter(cfg, loaded)
        kwargs: dict[str, Any] = {"reward_funcs": funcs, "reward_processing_classes": reward_tokenizers, **peft}
        return StageParts(
            model=loaded.model,
            tokenizer=loaded.tokenizer,
            train_dataset=prompts,
            trainer_class=GRPOTrainer,
            args_class=GRPOConfig,
            args_extra=args,
            trainer_kwargs=kwargs,
            parents=[parent_of(loaded.source), *reward_parents],
            data={"fingerprints": fingerprints, "train_prompts": len(prompts), "accuracy_prompts": len(accuracy)},
            model_info=summary,
            layer_class=loaded.family.decoder_layer or None,
            final_eval=accuracy_eval(accuracy) if accuracy else None,
            language_model=False,
        )
