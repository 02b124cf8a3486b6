"""The recipe schema: every key a recipe may hold, its type and its default.

One pydantic model for the whole run (as Axolotl does), split into sections so a
recipe reads like the contract in DESIGN.md. `extra="forbid"` everywhere: a typo is
an error with a suggestion, never a silently ignored key.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

STAGE_NAMES = ("pretrain", "sft", "rm", "dpo", "kto", "ppo", "grpo")
DATA_FORMATS = ("text", "alpaca", "sharegpt", "messages", "preference", "prompt")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(Section):
    name: str = Field(description="registry preset, HF id, local HF folder, or a previous run's output_dir")
    tokenizer: str | None = Field(
        None, description="tokenizer to use instead of the model's own (HF id, local folder, or a preset name)"
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights' dtype; auto = float32 weights (trained under bf16 autocast on GPUs that have "
        "bf16, in float32 on CPUs: see train.mixed_precision)")
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2", "flex_attention"] = Field(
        "auto", description="attention kernel; auto = PyTorch SDPA, or flash-attention 2 for packed rows on a GPU "
        "that has flash-attn")
    trust_remote_code: bool = Field(False, description="run code shipped with a hub model; off unless asked")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    config_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="model config fields to change for a preset built from scratch (e.g. num_hidden_layers)",
    )

    def for_other(self, name: str) -> ModelConfig:
        """These settings (dtype, attention, trust) for another model the run loads: a reward or value model.
        Its own tokenizer and config are used, not this model's overrides."""
        return self.model_copy(update={"name": name, "tokenizer": None, "config_overrides": {}})


class AdapterConfig(Section):
    type: Literal["none", "lora", "dora", "qlora", "freeze"] = Field(
        "none", description="none = full training; lora/dora/qlora via peft; freeze = train the last layers")
    r: int = Field(8, ge=1, description="LoRA rank")
    alpha: int = Field(16, ge=1, description="LoRA scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="LoRA dropout")
    target_modules: list[str] | Literal["all-linear"] | None = Field(
        None, description="default: the model family's LoRA targets from the registry"
    )
    trainable_layers: int = Field(2, ge=1, description="freeze: how many of the last layers train")


class DataSource(Section):
    name: str | None = Field(None, description="a built-in dataset or a Hugging Face dataset id")
    path: str | None = Field(None, description="a local .jsonl/.json/.parquet/.csv/.txt file or folder")
    format: Literal["text", "alpaca", "sharegpt", "messages", "preference", "prompt"] | None = Field(
        None, description="row format; built-ins know their own"
    )
    split: str = Field("train", description="split to read (built-ins: train, test)")
    subset: str | None = Field(None, description="HF dataset configuration name")
    columns: dict[str, str] = Field(
        default_factory=dict, description="rename columns: {expected_name: name_in_your_file}"
    )
    max_samples: int | None = Field(None, ge=1, description="read only the first N rows")
    options: dict[str, Any] = Field(default_factory=dict, description="options of a built-in generator")

    @model_validator(mode="after")
    def _one_origin(self) -> DataSource:
        if (self.name is None) == (self.path is None):
            raise ValueError("give exactly one of 'name' (built-in or HF dataset) or 'path' (local file)")
        return self


class DataConfig(Section):
    train: list[DataSource] = Field(min_length=1, description="training sources, concatenated")
    eval: list[DataSource] = Field(default_factory=list, description="held-out sources for eval metrics")
    eval_fraction: float = Field(
        0.0, ge=0.0, lt=1.0, description="hold out this share of train documents when data.eval is empty"
    )
    max_length: int = Field(512, ge=8, description="tokens per training row (pretraining block size)")
    packing: bool | Literal["auto", "grouped"] = Field(
        "auto", description="pretraining: true = fixed blocks (auto), false = one document per row; SFT: true = "
        "padding-free packed rows, grouped = padded batches of similar lengths, false = padded batches, auto = "
        "the fastest for the device (data/batching.py)")
    streaming: bool = Field(False, description="read and pack on the fly, for corpora bigger than memory")
    truncation: Literal["truncate", "drop"] = Field(
        "truncate", description="SFT samples longer than max_length: cut to fit, or leave out (counted either way)")
    train_on: Literal["assistant", "all"] = Field(
        "assistant", description="SFT loss on assistant tokens only (default), or on every token")
    cache_dir: str | None = Field(None, description="where tokenized data is cached (default ~/.cache/llmforge)")


class TrainConfig(Section):
    max_steps: int = Field(-1, description="optimizer steps; -1 = derive from epochs")
    epochs: float = Field(1.0, gt=0, description="passes over the data when max_steps is -1")
    micro_batch_size: int = Field(8, ge=1, description="rows per device per forward pass")
    grad_accum_steps: int = Field(1, ge=1, description="micro-batches per optimizer step")
    lr: float = Field(3e-4, gt=0, description="peak learning rate")
    scheduler: Literal[
        "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
        "inverse_sqrt", "cosine_with_min_lr",
    ] = Field("cosine", description="learning-rate schedule after warmup")
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0, description="cosine_with_min_lr: floor as a share of lr")
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0, description="share of steps spent warming up")
    max_grad_norm: float = Field(1.0, ge=0.0, description="gradient clipping; 0 = off")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay")
    optimizer: Literal["adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "adamw_8bit"] = Field(
        "adamw_torch", description="optimizer (adamw_8bit needs bitsandbytes and a GPU)")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="autocast: auto = bf16 on GPUs that have it (fp16 on older ones), none on CPUs; no = "
        "compute in model.dtype; bf16/fp16 = autocast float32 weights (written to run.json as `precision`)")
    gradient_checkpointing: bool = Field(False, description="recompute activations: less memory, ~30% slower")
    compile: bool = Field(False, description="torch.compile the model (not ppo; the first steps compile)")
    liger_kernel: bool = Field(False, description="Liger's fused Triton kernels (GPU, not ppo; needs `pip install "
                               "liger-kernel`)")

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> TrainConfig:
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError("max_steps must be a positive number of steps, or -1 to train for `epochs`")
        return self


class EvalConfig(Section):
    every_steps: int | None = Field(None, ge=1, description="evaluate during training; default: only at the end")
    micro_batch_size: int | None = Field(None, ge=1, description="eval batch size; default train.micro_batch_size")
    max_samples: int | None = Field(None, ge=1, description="cap the eval set (rows) for speed")


class CheckpointConfig(Section):
    every_steps: int = Field(500, ge=1, description="save a checkpoint every N optimizer steps")
    keep_last: int = Field(2, ge=1, description="complete checkpoints to keep (older ones are deleted)")
    resume: str = Field("auto", description="auto | never | PATH to a checkpoint folder")


class DistributedConfig(Section):
    nproc_per_node: int = Field(1, ge=1, description="processes (GPUs) per node; >1 relaunches under torchrun")
    nnodes: int = Field(1, ge=1, description="number of nodes")
    node_rank: int = Field(0, ge=0, description="this node's index (0 .. nnodes-1)")
    master_addr: str = Field("127.0.0.1", description="address of node 0 for rendezvous")
    master_port: int = Field(29500, ge=1, le=65535, description="port of node 0 for rendezvous")
    strategy: Literal["ddp", "fsdp", "deepspeed"] = Field("ddp", description="how work is split across processes")
    zero_stage: Literal[0, 1, 2, 3] = Field(2, description="DeepSpeed ZeRO stage")
    offload: Literal["none", "optimizer", "all"] = Field(
        "none", description="DeepSpeed/FSDP CPU offload: optimizer state, or optimizer and parameters")
    state_dict: Literal["sharded", "full"] = Field(
        "sharded", description="FSDP checkpoint format (final/ is always a full HF folder)")
    deepspeed_config: str | None = Field(None, description="your own DeepSpeed JSON instead of the generated one")


class LoggingConfig(Section):
    every_steps: int = Field(10, ge=1, description="log training metrics every N steps")
    report_to: list[Literal["tensorboard"]] = Field(
        default_factory=list, description="extra sinks; tensorboard writes output_dir/tensorboard")

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if value in (None, "none"):
            return []
        return [value] if isinstance(value, str) else value


DPO_LOSSES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sigmoid_norm")
REWARD_FUNCTIONS = ("arithmetic", "final_number")  # built-in verifiable rewards (llmforge.rl.rewards)


class RewardOptions(Section):
    center_rewards: float | None = Field(
        None, ge=0.0, description="weight of a penalty pulling mean reward to 0 (TRL center_rewards_coefficient)")
    stats_samples: int = Field(
        1000, ge=1, description="pairs scored after training for the mean/std saved in final/reward_stats.json")


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


class KTOOptions(ReferenceOptions):
    loss_type: Literal["kto", "apo_zero_unpaired"] = Field("kto", description="TRL KTO loss: kto, apo_zero_unpaired")
    desirable_weight: float = Field(
        1.0, gt=0.0, description="loss weight of desirable (chosen) answers; raise it when they are fewer")
    undesirable_weight: float = Field(1.0, gt=0.0, description="loss weight of undesirable (rejected) answers")


class RewardSources(Section):
    """What an online stage (grpo, ppo) rewards: a trained reward model and/or verifiable functions."""

    reward_model: str | None = Field(None, description="a reward model (an rm run or HF folder) scoring completions")
    reward_functions: list[Literal[REWARD_FUNCTIONS]] = Field(
        default_factory=list, description="built-in verifiable rewards: " + ", ".join(REWARD_FUNCTIONS))
    reward_weights: list[float] | None = Field(
        None, description="weights of [reward_model, *reward_functions] in that order; default all 1")
    max_new_tokens: int = Field(64, ge=1, description="longest completion")
    generation: Literal["auto", "padded", "continuous"] = Field(
        "auto", description="how completions are sampled: padded generate() batches, or transformers' continuous "
        "batching; auto = the faster on this device (rl/sampling.py)")
    temperature: float = Field(1.0, gt=0.0, description="sampling temperature")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling")

    def check_rewards(self, section: str) -> None:
        if not self.reward_model and not self.reward_functions:
            raise ValueError(f"stage {section} needs something to reward: set {section}.reward_model (an rm run) "
                             f"and/or {section}.reward_functions (" + ", ".join(REWARD_FUNCTIONS) + ")")
        sources = int(bool(self.reward_model)) + len(self.reward_functions)
        if self.reward_weights is not None and len(self.reward_weights) != sources:
            raise ValueError(f"{section}.reward_weights has {len(self.reward_weights)} weights for {sources} "
                             "rewards (reward_model first, then reward_functions)")


class GRPOOptions(RewardSources):
    num_generations: int = Field(8, ge=2, description="completions sampled per prompt (the group)")
    beta: float = Field(0.0, ge=0.0, description="KL penalty against the reference (0 = no reference model)")
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = Field("dapo", description="TRL GRPO loss aggregation")
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="divide advantages by the reward std of the group, the batch, or not at all")


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


class RunConfig(Section):
    stage: Literal["pretrain", "sft", "rm", "dpo", "kto", "ppo", "grpo"] = Field(description="which stage this recipe runs")
    output_dir: str = Field(description="run folder: run.json, metrics.jsonl, checkpoints/, final/")
    seed: int = Field(42, description="seeds model init, data order and dropout")
    model: ModelConfig
    adapter: AdapterConfig = Field(default_factory=AdapterConfig)
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    rm: RewardOptions = Field(default_factory=RewardOptions)
    dpo: DPOOptions = Field(default_factory=DPOOptions)
    kto: KTOOptions = Field(default_factory=KTOOptions)
    grpo: GRPOOptions = Field(default_factory=GRPOOptions)
    ppo: PPOOptions = Field(default_factory=PPOOptions)

    @model_validator(mode="after")
    def _online_stage_has_rewards(self) -> RunConfig:
        if self.stage in ("grpo", "ppo"):
            getattr(self, self.stage).check_rewards(self.stage)
            if self.adapter.type == "freeze":
                raise ValueError(f"adapter.type=freeze is not offered for {self.stage}; use none (full) or lora")
        if self.stage == "ppo":
            mini_batch = self.train.micro_batch_size * self.train.grad_accum_steps
            completions = self.ppo.rollout_batch_size * self.ppo.samples_per_prompt
            if completions % mini_batch:
                raise ValueError(f"ppo.rollout_batch_size x ppo.samples_per_prompt = {completions} completions must "
                                 f"be a multiple of the mini-batch, train.micro_batch_size x train.grad_accum_steps "
                                 f"= {mini_batch}")
            if self.ppo.advantage_estimator == "rloo" and self.ppo.samples_per_prompt < 2:
                raise ValueError("ppo.advantage_estimator=rloo compares each completion with the other samples of "
                                 "its prompt: set ppo.samples_per_prompt to 2 or more")
            if self.train.compile or self.train.liger_kernel:
                raise ValueError("train.compile and train.liger_kernel apply to the Trainer-based stages; ppo runs "
                                 "its own loop and does not use them: set them to false")
            if self.ppo.advantage_estimator == "rloo" and self.ppo.value_model:
                raise ValueError("ppo.advantage_estimator=rloo uses no value model: remove ppo.value_model")
        return self


# Keys that may change between a run and its resumption without making it a different run.
RESUME_NEUTRAL_SECTIONS = ("checkpoint", "distributed", "logging")
# Option sections read only by their own stage.
STAGE_SECTIONS = ("rm", "dpo", "kto", "grpo", "ppo")
