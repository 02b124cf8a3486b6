"""The recipe schema: every key a recipe may hold, its type and its default.

One pydantic model for the whole run (as Axolotl does), split into sections: the ones every
stage shares are here; each stage declares its own options section in its module, and
config/compose.py puts them together. `extra="forbid"` everywhere: a typo is an error with a
suggestion, never a silently ignored key.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DATA_FORMATS = ("text", "alpaca", "sharegpt", "messages", "preference", "prompt")
# which of them each kind of stage trains on
SFT_FORMATS = ("alpaca", "sharegpt", "messages", "text")
PAIR_FORMATS = ("preference",)  # what rm, dpo and kto train on
PROMPT_FORMATS = ("prompt", "preference")  # what the online stages generate from (a pair's prompt)
# the files a data `path` may name, by suffix, and the `datasets` builder that reads each
BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".txt": "text",
            ".text": "text", ".md": "text"}


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


ADAPTER_TYPES = ("lora", "dora", "qlora")  # adapter.type values that train peft adapters over a frozen base


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
        if self.name is not None and self.name.lower().endswith(tuple(BUILDERS)):
            # else it goes to the hub, which can never find it
            raise ValueError(f"'{self.name}' names a file: 'name' is for built-in and Hugging Face datasets, 'path' "
                             "for files; give it as path")
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


class EarlyStopping(Section):
    patience: int = Field(3, ge=1, description="evaluations without improvement before training stops")
    min_delta: float = Field(0.0, ge=0.0, description="an improvement smaller than this does not count")


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
        "adamw_torch", description="optimizer: adamw_torch (per-tensor loop), adamw_torch_fused (one fused kernel; "
        "the same update with other rounding: 1.01x SFT tokens/s on the bench's CPU, more where the optimizer "
        "step is a larger share), adafactor, sgd, adamw_8bit (needs bitsandbytes and a GPU)")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="autocast: auto = bf16 on GPUs that have it (fp16 on older ones), none on CPUs; no = "
        "compute in model.dtype; bf16/fp16 = autocast float32 weights (written to run.json as `precision`)")
    gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto", description="recompute activations in the backward pass: less memory, ~30% slower; auto = on where "
        "the memory plan predicts activations to be the largest part of the peak (llmforge plan)")
    chunked_loss: bool = Field(
        True, description="compute next-token log-probs through the LM head in chunks, never holding the [tokens x "
        "vocabulary] logits (pretrain, sft, ppo: kernels/vocab.py; dpo, kto, grpo: TRL's own chunked head, always; "
        "under DeepSpeed ZeRO-3 the model's own loss); false = the plain loss over the whole logits")
    compile: bool = Field(False, description="torch.compile the model (not ppo; the first steps compile)")
    liger_kernel: bool = Field(False, description="Liger's fused Triton kernels (GPU, not ppo; needs `pip install "
                               "liger-kernel`)")

    early_stopping: EarlyStopping | None = Field(
        None, description="stop when checkpoint.best_metric has not improved for `patience` evaluations")

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
    best_metric: str | None = Field(
        None, description="an eval_* metric: keep the best checkpoint (never rotated away) and publish its weights "
        "as final/; needs eval.every_steps dividing checkpoint.every_steps")
    best_mode: Literal["auto", "min", "max"] = Field(
        "auto", description="whether lower or higher best_metric is better; auto = min for losses and perplexity")

    def greater_is_better(self) -> bool:
        if self.best_mode != "auto":
            return self.best_mode == "max"
        return not any(word in (self.best_metric or "") for word in ("loss", "perplexity"))


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
    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=list, description="experiment trackers, any of: tensorboard (output_dir/tensorboard), mlflow "
        "(MLFLOW_TRACKING_URI, else a SQLite store in output_dir), wandb (honours WANDB_MODE=offline)")
    run_name: str | None = Field(None, description="the tracker run's name; default: the output folder's name")
    project: str = Field("llmforge", description="W&B project / MLflow experiment")
    tags: dict[str, str] = Field(default_factory=dict, description="tags on the tracker run (key: value)")

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if value in (None, "none"):
            return []
        return [value] if isinstance(value, str) else value


class RunConfig(Section):
    """The sections every recipe has. The class recipes validate against adds `stage` (one of the declared
    stages) and each stage's own options section: config/compose.py builds it from the declarations."""

    stage: str = Field(description="which stage this recipe runs")
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

    def options(self) -> Any:
        """This stage's own options section (None for a stage without one)."""
        return getattr(self, self.stage, None)

    @model_validator(mode="after")
    def _selection_needs_evaluation(self) -> RunConfig:
        best, every = self.checkpoint.best_metric, self.eval.every_steps
        if self.train.early_stopping is not None and best is None:
            raise ValueError("train.early_stopping watches checkpoint.best_metric: set it (e.g. eval_loss)")
        if best is not None:
            if not best.startswith("eval_"):
                raise ValueError(f"checkpoint.best_metric '{best}' must be an evaluation metric (eval_loss, "
                                 "eval_accuracy, ...)")
            if every is None:
                raise ValueError("checkpoint.best_metric needs evaluations during training: set eval.every_steps")
            if self.checkpoint.every_steps % every:
                raise ValueError(f"checkpoint.every_steps={self.checkpoint.every_steps} must be a multiple of "
                                 f"eval.every_steps={every}, so every checkpoint has the metric that ranks it")
        return self


# Keys that may change between a run and its resumption without making it a different run.
RESUME_NEUTRAL_SECTIONS = ("checkpoint", "distributed", "logging")
