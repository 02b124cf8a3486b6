"""PPO against a reward model and/or verifiable rewards, on our own loop (llmforge.rl).

The stage loads the four models through the registry: the policy (full or LoRA), its
reference (the LoRA base with adapters off, else a frozen copy of the start), the value
model (from `ppo.value_model`, the reward model, or the policy's start, with a one-score
head) and the reward model (`ppo.reward_model`, whose saved score statistics rescale its
scores). The engine drives the returned PPOTrainer like any Trainer.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from llmforge.config.schema import RunConfig
from llmforge.config.stages import Cost, Footprint, StageSpec
from llmforge.errors import UserError
from llmforge.stages.common import (
    ADAPTER_TYPES,
    accuracy_eval,
    anchor_start,
    load_side_model,
    model_summary,
    parent_of,
)
from llmforge.stages.online import ONLINE_KEYS, RewardSources, check_rewards, online_spec, prompts_within

if TYPE_CHECKING:
    from llmforge.engine.parts import StageParts
    from llmforge.rl.selection import Selection


def same_vocabulary(policy_tokenizer: Any, other_tokenizer: Any, name: str, role: str) -> None:
    """The value model reads the policy's token ids, so every policy token must mean the same there."""
    theirs = other_tokenizer.get_vocab()
    if any(theirs.get(token) != index for token, index in policy_tokenizer.get_vocab().items()):
        raise UserError(f"ppo.{role}: '{name}' uses a different tokenizer from the policy, and the {role} reads "
                        "the policy's tokens. Start it from the policy's family (e.g. an rm run trained from "
                        "the SFT model), or set ppo.value_model to the policy's start, or to `policy` (a value head on "
                        "the policy).")


VALUE_HEAD_ON_POLICY = "policy"


class PPOOptions(RewardSources):
    rollout_batch_size: int = Field(
        32, ge=1, description="prompts sampled per step per process; the rollout is split into mini-batches of "
        "train.micro_batch_size x train.grad_accum_steps sequences, one optimizer step each")
    ppo_epochs: int = Field(2, ge=1, description="passes over each rollout (mini-batches reshuffled each pass)")
    samples_per_prompt: int = Field(1, ge=1, description="completions sampled per prompt in a rollout")
    advantage_estimator: Literal["gae", "rloo"] = Field(
        "gae", description="gae = learnt value model + GAE; rloo = no value model, each completion's baseline is "
        "the mean score of its prompt's other samples (needs samples_per_prompt >= 2)")
    value_model: str | None = Field(
        None, description="where the value model starts (any model.name; a new one-score head if it has none), "
        "or `policy`: a value head on the policy itself (shared backbone); default: the reward model, else the "
        "policy's start")
    value_lr: float | None = Field(None, gt=0.0, description="value model learning rate; default train.lr")
    gamma: float = Field(1.0, ge=0.0, le=1.0, description="discount over response tokens")
    lam: float = Field(0.95, ge=0.0, le=1.0, description="GAE lambda")
    cliprange: float = Field(0.2, gt=0.0, description="policy ratio clip")
    cliprange_value: float | None = Field(0.2, gt=0.0, description="value clip around the rollout's values; null = off")
    vf_coef: float = Field(0.1, ge=0.0, description="weight of the value loss")
    entropy_coef: float = Field(0.0, ge=0.0, description="entropy bonus weight")
    kl_coef: float = Field(0.05, ge=0.0, description="per-token KL penalty against the reference, folded into the "
                           "reward (the starting value when kl_target is set)")
    kl_estimator: Literal["k1", "k2", "k3"] = Field("k1", description="per-token KL estimator (k3 is never negative)")
    kl_target: float | None = Field(None, gt=0.0, description="adapt kl_coef towards this KL per sequence")
    kl_horizon: int = Field(10000, ge=1, description="sequences over which the adaptive coefficient moves")
    whiten_advantages: bool = Field(True, description="zero-mean, unit-variance advantages per rollout")
    normalize_reward: bool = Field(
        True, description="rescale reward-model scores with the mean/std the rm run saved (reward_stats.json)")
    reward_clip: float | None = Field(10.0, gt=0.0, description="clip the combined score to +-this; null = off")
    missing_eos_penalty: float | None = Field(
        None, ge=0.0, description="subtract this from the score of completions cut at max_new_tokens")


def build(cfg: RunConfig) -> StageParts:
    from llmforge.distributed.strategy import accelerator_for
    from llmforge.engine.adapters import apply_adapter, quantization_kwargs
    from llmforge.engine.parts import StageParts
    from llmforge.eval.reward_model import load_reward_model, saved_statistics
    from llmforge.inference import stops_of
    from llmforge.precision import current_device
    from llmforge.registry import load_model
    from llmforge.rl.sampling import choose_engine
    from llmforge.rl.scoring import Scorer
    from llmforge.rl.trainer import PPOTrainer

    options = cfg.ppo
    loaded = load_model(cfg.model, **quantization_kwargs(cfg.adapter))
    anchor_start(cfg, loaded)
    tokenizer = loaded.tokenizer
    prompts, accuracy, fingerprints, dropped = prompts_within(cfg, tokenizer)
    lora = cfg.adapter.type in ADAPTER_TYPES
    ref_model = None if lora else copy.deepcopy(loaded.model)
    policy = apply_adapter(loaded.model, cfg.adapter, loaded.family)

    parents = [parent_of(loaded.source)]
    reward_model, stats = None, {}
    if options.reward_model:
        reward_model = load_reward_model(options.reward_model, "cpu", like=cfg.model)  # the trainer places it
        stats = saved_statistics(reward_model) if options.normalize_reward else {}
        parents.append({**parent_of(reward_model.source), "role": "reward_model"})
    value_name = VALUE_HEAD_ON_POLICY if options.advantage_estimator == "rloo" else (
        options.value_model or options.reward_model or cfg.model.name)
    value_model, value_trainable = None, 0
    if value_name != VALUE_HEAD_ON_POLICY:
        value = load_side_model(cfg, value_name)
        same_vocabulary(tokenizer, value.tokenizer, value_name, "value_model")
        value.model.config.pad_token_id = tokenizer.pad_token_id  # its head pools at the last non-pad token
        value_model = apply_adapter(value.model, cfg.adapter, value.family, task_type="SEQ_CLS")
        value_trainable = model_summary(value, value_model)["trainable_parameters"]
        parents.append({**parent_of(value.source), "role": "value_model"})
    scorer = Scorer(reward_model, stats, options.sources(), options.reward_weights)
    # a value model that is the reward model predicts raw scores: put them on the rescaled rewards' scale
    value_scale = (stats["mean"], max(stats["std"], 1e-8)) if value_name == options.reward_model and stats else (0.0, 1.0)
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
                        "scorer": scorer, "options": options, "stop_ids": stops_of(loaded),
                        "value_scale": value_scale,
                        "engine": choose_engine(options.generation, current_device(), cfg.distributed.strategy),
                        "eval_items": accuracy, "eval_every": cfg.eval.every_steps,
                        "selection": selection_of(cfg), "chunked": cfg.train.chunked_loss},
        parents=parents,
        data={"fingerprints": fingerprints, "train_prompts": len(prompts), "dropped_long_prompts": dropped,
              "accuracy_prompts": len(accuracy), "reward_stats": stats},
        model_info=summary,
        layer_class=layer_class,
        final_eval=accuracy_eval(accuracy) if accuracy else None,
        language_model=False,
    )


def selection_of(cfg: RunConfig) -> Selection:
    from llmforge.rl.selection import Selection

    stopping = cfg.train.early_stopping
    return Selection(cfg.checkpoint.best_metric, cfg.checkpoint.greater_is_better(),
                     stopping.patience if stopping else None, stopping.min_delta if stopping else 0.0)


def check(cfg: RunConfig) -> None:
    check_rewards(cfg)
    options, train = cfg.ppo, cfg.train
    mini_batch = train.micro_batch_size * train.grad_accum_steps
    completions = options.rollout_batch_size * options.samples_per_prompt
    if completions % mini_batch:
        raise ValueError(f"ppo.rollout_batch_size x ppo.samples_per_prompt = {completions} completions must be a "
                         f"multiple of the mini-batch, train.micro_batch_size x train.grad_accum_steps = {mini_batch}")
    if options.advantage_estimator == "rloo" and options.samples_per_prompt < 2:
        raise ValueError("ppo.advantage_estimator=rloo compares each completion with the other samples of its "
                         "prompt: set ppo.samples_per_prompt to 2 or more")
    if options.advantage_estimator == "rloo" and options.value_model:
        raise ValueError("ppo.advantage_estimator=rloo uses no value model: remove ppo.value_model")


def rollout_rows(cfg: RunConfig) -> int:
    """Rows a PPO step computes over: every completion, once per update epoch and once to score it."""
    return cfg.ppo.rollout_batch_size * cfg.ppo.samples_per_prompt * (cfg.ppo.ppo_epochs + 1)


def footprint(cfg: RunConfig) -> Footprint:
    """The rollout's sequences sampled at once, the reference (the adapter switched off, or a copy), the reward
    model, and a separate critic unless the value head sits on the policy; the loss covers the responses only."""
    options = cfg.ppo
    value = VALUE_HEAD_ON_POLICY if options.advantage_estimator == "rloo" else (
        options.value_model or options.reward_model or cfg.model.name)
    return Footprint(response_tokens=options.max_new_tokens,
                     reference="adapter" if cfg.adapter.type in ADAPTER_TYPES else "copy",
                     generated_sequences=options.rollout_batch_size * options.samples_per_prompt,
                     frozen_models=(options.reward_model,) if options.reward_model else (),
                     critic=None if value == VALUE_HEAD_ON_POLICY else value)


SPEC = StageSpec(
    name="ppo",
    order=60,
    summary="proximal policy optimisation on our own loop: value model and GAE, or RLOO baselines",
    uses=ONLINE_KEYS + ("eval.every_steps",),
    refuses=("train.compile", "train.liger_kernel"),
    refuses_why="they apply to the Trainer-based stages; ppo runs its own loop and does not use them",
    options=PPOOptions,
    build=build,
    check=check,
    **online_spec(),
    cost=Cost(efficiency=0.57, rows_per_step=rollout_rows),
    footprint=footprint,
)
