"""Group relative policy optimisation through TRL's GRPOTrainer.

Rewards come from a trained reward model (`grpo.reward_model`: an rm run, scored by
TRL with the reward model's own tokenizer and template) and/or built-in verifiable
functions (`grpo.reward_functions`), which read dataset columns such as `answer`.
Generation stops at the family's end-of-turn token as well as EOS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from llmforge.config.schema import RunConfig
from llmforge.config.stages import Cost, Footprint, StageSpec
from llmforge.errors import UserError
from llmforge.rl.reward_functions import RewardSource, completion_text
from llmforge.stages.common import (
    ADAPTER_TYPES,
    accuracy_eval,
    anchor_start,
    chunked_by_trl,
    held_out_curve,
    parent_of,
    trainer_adapter,
)
from llmforge.stages.online import ONLINE_KEYS, RewardSources, check_rewards, online_spec, prompts_within

if TYPE_CHECKING:
    from llmforge.engine.parts import StageParts


def trl_reward_function(source: RewardSource, columns: list[str]) -> Any:
    """A reward source as TRL's GRPOTrainer calls reward functions (keyword lists; None = left out), named
    so TRL logs it as rewards/<name>."""

    def reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        return source(prompts, [completion_text(c) for c in completions],
                      {name: kwargs[name] for name in columns if name in kwargs})

    reward.__name__ = source.label
    return reward


def reward_sources(cfg: RunConfig, columns: list[str]) -> tuple[list[Any], list[Any], list[dict]]:
    """(reward functions/models, their tokenizers, lineage entries) in the order grpo.reward_weights uses."""
    funcs, tokenizers, parents = [], [], []
    if cfg.grpo.reward_model:
        from llmforge.eval.reward_model import load_reward_model

        rm = load_reward_model(cfg.grpo.reward_model, "cpu", like=cfg.model)  # TRL places it beside the policy
        funcs.append(rm.model)
        tokenizers.append(rm.tokenizer)
        parents.append({**parent_of(rm.source), "role": "reward_model"})
    for source in cfg.grpo.sources():  # their columns were checked with the prompts (prompts_within)
        funcs.append(trl_reward_function(source, columns))
        tokenizers.append(None)
    return funcs, tokenizers, parents


class GRPOOptions(RewardSources):
    num_generations: int = Field(8, ge=2, description="completions sampled per prompt (the group)")
    beta: float = Field(0.0, ge=0.0, description="KL penalty against the reference (0 = no reference model)")
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = Field("dapo", description="TRL GRPO loss aggregation")
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="divide advantages by the reward std of the group, the batch, or not at all")



def build(cfg: RunConfig) -> StageParts:
    from trl import GRPOConfig, GRPOTrainer

    from llmforge.distributed.state import process_state
    from llmforge.engine.adapters import quantization_kwargs
    from llmforge.engine.callbacks import GenerationClock
    from llmforge.engine.parts import StageParts
    from llmforge.inference import stops_of
    from llmforge.precision import current_device
    from llmforge.registry import load_model
    from llmforge.rl.sampling import choose_engine

    options = cfg.grpo
    per_step = cfg.train.micro_batch_size * process_state().num_processes
    if per_step % options.num_generations:
        raise UserError(f"grpo.num_generations={options.num_generations} must divide the completions per step "
                        f"(train.micro_batch_size x processes = {per_step}): each prompt's group of completions "
                        "is scored together.")
    loaded = load_model(cfg.model, **quantization_kwargs(cfg.adapter))
    # TRL builds a full-training reference from the model's name: make sure that name loads these weights
    anchor_start(cfg, loaded, needed=cfg.adapter.type in ADAPTER_TYPES or options.beta > 0)
    prompts, accuracy, fingerprints, dropped = prompts_within(cfg, loaded.tokenizer)
    prompts = prompts.remove_columns("prompt_ids")  # TRL templates and tokenizes the prompts itself
    funcs, reward_tokenizers, reward_parents = reward_sources(cfg, [c for c in prompts.column_names if c != "prompt"])
    args = {"num_generations": options.num_generations, "beta": options.beta, "max_completion_length": options.max_new_tokens,
            "temperature": options.temperature, "top_p": options.top_p, "loss_type": options.loss_type,
            "scale_rewards": options.scale_rewards, "reward_weights": options.reward_weights, "disable_dropout": True,
            "generation_kwargs": {"eos_token_id": stops_of(loaded)}, "log_completions": False,
            "use_transformers_continuous_batching":
                choose_engine(options.generation, current_device(), cfg.distributed.strategy) == "continuous"}
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
        data={"fingerprints": fingerprints, "train_prompts": len(prompts), "dropped_long_prompts": dropped,
              "accuracy_prompts": len(accuracy)},
        model_info=summary,
        layer_class=loaded.family.decoder_layer or None,
        final_eval=accuracy_eval(accuracy) if accuracy else None,
        language_model=False,
        callbacks=[GenerationClock(), *held_out_curve(cfg, loaded, accuracy)],
    )


def footprint(cfg: RunConfig) -> Footprint:
    """A generation batch of micro_batch_size x grad_accum_steps completions sampled at once (TRL's
    steps_per_generation), the reference when beta > 0, and the reward model."""
    reference = "none" if cfg.grpo.beta == 0 else "adapter" if cfg.adapter.type in ADAPTER_TYPES else "copy"
    return Footprint(reference=reference, generated_sequences=cfg.train.micro_batch_size * cfg.train.grad_accum_steps,
                     frozen_models=(cfg.grpo.reward_model,) if cfg.grpo.reward_model else (), loss_kernel="trl")


SPEC = StageSpec(
    name="grpo",
    order=70,
    summary="group relative policy optimisation through TRL's GRPOTrainer, rewarded by a reward model and/or "
            "verifiable functions",
    uses=ONLINE_KEYS + ("eval.every_steps",),
    options=GRPOOptions,
    build=build,
    check=lambda cfg: (check_rewards(cfg), chunked_by_trl(cfg)),
    **online_spec(),
    cost=Cost(efficiency=0.038, tokens_per_row=lambda cfg: cfg.grpo.max_new_tokens),
    footprint=footprint,
)
