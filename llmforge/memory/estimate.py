"""Predicted peak memory per process of a training recipe: every term in bytes, and the phase that peaks.

It starts where the field's estimators start (the ZeRO paper's model states: weights, gradients and
optimizer states per parameter, divided over the processes a strategy shards them across; DeepSpeed's
estimator; LLaMA-Factory's hardware table) and adds the terms that decide real runs, each measured rather
than guessed (docs/memory.md):
- activations saved for the backward pass: 4 I + 8 h + 2 kv + heads + 2 values per token per decoder
  layer for the Llama/Qwen2/Mistral layers with SDPA attention (counted with autograd's saved-tensor hooks
  at three widths, exact), plus 2 h + 2 head_dim per token outside the layers; with gradient checkpointing,
  h per token per layer plus one layer rebuilt at a time;
- the loss over the vocabulary: the whole logits cost 3 x tokens x vocab x 4 bytes (the logits, the shifted
  copy the loss takes and its log-softmax; measured 2.8 at 0.5B, 2,048 x 4 tokens); llmforge's chunked kernel ~2.15 chunks of 2^26 logits (and, training the head, its gradient
  formed with them); TRL's fused head (dpo, kto, grpo) ~7.8 tiles of 4,096 tokens x 32,768 columns on a CPU;
- the optimizer's scratch (per tensor on a CPU: ~1.5 x the largest tensor; a whole extra copy for foreach
  kernels on a GPU), the process itself (libraries, data, tokenizer), a reference copy or the adapter
  switched off, reward and value models, and the KV cache of the sequences generated at once.
Phases: loading, a forward and backward pass, the optimizer step, generation; the peak is the largest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmforge.config.schema import ADAPTER_TYPES, RunConfig
from llmforge.config.stages import Footprint
from llmforge.kernels.vocab import CHUNK_LOGITS
from llmforge.memory.shapes import ModelShape

GiB = 2**30
RUNTIME_CPU = int(0.62 * GiB)  # python, torch, transformers, TRL, datasets imported, data prepared (measured)
TOKENIZER_BYTES_PER_TOKEN = 900  # a fast tokenizer's vocabulary and merges in memory (measured: 151,936 tokens)
CUDA_CONTEXT = int(0.5 * GiB)  # outside torch's allocator: the CUDA context and kernels
LAYER_ELEMENTS = (4, 8, 2, 1, 2)  # saved per token per layer: 4 I + 8 h + 2 kv_dim + heads + 2
TRL_TOKENS, TRL_VOCAB = 4096, 32768  # TRL's chunked log-prob tiles (its DPO, KTO and GRPO trainers)
TRL_TILES_CPU, TRL_TILES_GPU = 7.8, 2.0  # live tiles at its peak (torch ops on a CPU, Triton on a GPU)
OWN_CHUNKS = 2.15  # kernels/vocab.py: live chunks of CHUNK_LOGITS values at its peak (measured)
FULL_LOGITS_COPIES = 3.0  # logits, their shifted copy and its log-softmax, at the peak of the plain loss
ADAM_STATE_BYTES = {"adamw_torch": 8, "adamw_torch_fused": 8, "adamw_8bit": 2, "adafactor": 0.1, "sgd": 0}


@dataclass
class Term:
    name: str
    bytes: int
    note: str = ""


@dataclass
class Phase:
    name: str
    terms: list[Term]

    @property
    def total(self) -> int:
        return sum(t.bytes for t in self.terms)


@dataclass
class Estimate:
    """The prediction for one process: its phases, the one that peaks, and how it was reached."""

    device: str
    processes: int
    strategy: str
    phases: list[Phase]
    shape: ModelShape
    gradient_checkpointing: bool
    notes: list[str] = field(default_factory=list)

    @property
    def peak_phase(self) -> Phase:
        return max(self.phases, key=lambda p: p.total)

    @property
    def peak(self) -> int:
        return self.peak_phase.total

    def term(self, name: str) -> int:
        return next((t.bytes for t in self.peak_phase.terms if t.name == name), 0)


@dataclass(frozen=True)
class Precision:
    weights: int  # bytes per weight
    activations: int  # bytes per activation value (the autocast dtype, else the weights')
    master: int  # bytes per gradient and per optimizer-state value of a trained parameter


def precision_bytes(cfg: RunConfig, device: str) -> Precision:
    """Bytes per value from model.dtype and train.mixed_precision, as llmforge.precision decides them (on a GPU
    with bf16 when planning one)."""
    dtype, mixed = cfg.model.dtype, cfg.train.mixed_precision
    weights = {"bfloat16": 2, "float16": 2}.get(dtype, 4)
    if device == "cpu":
        autocast = mixed == "bf16"
    else:
        autocast = mixed in ("bf16", "fp16") or (mixed == "auto" and dtype == "auto")
    return Precision(weights=weights, activations=2 if autocast or weights == 2 else 4,
                     master=4 if weights == 4 else weights)


def layer_elements(shape: ModelShape, attention: str, sequence: int) -> int:
    """Values saved per token by one decoder layer for its backward pass."""
    i, h, kv, heads, extra = LAYER_ELEMENTS
    saved = i * shape.intermediate + h * shape.hidden + kv * shape.kv_dim + heads * shape.heads + extra
    if attention == "eager":  # the attention weights, before and after softmax
        saved += 2 * shape.heads * sequence
    return saved


def estimate(cfg: RunConfig, shape: ModelShape, footprint: Footprint, device: str,
             side_shapes: dict[str, ModelShape | None], gradient_checkpointing: bool,
             family_targets: tuple[str, ...] | str) -> Estimate:
    """The memory of one process of `cfg` (whose model has `shape`) on `device` (cpu | cuda)."""
    p = precision_bytes(cfg, device)
    train, adapter, dist = cfg.train, cfg.adapter, cfg.distributed
    world = dist.nproc_per_node * dist.nnodes
    strategy = dist.strategy if world > 1 else "single"
    adapted = adapter.type in ADAPTER_TYPES or adapter.type == "freeze"
    trainable = shape.adapter_parameters(adapter, family_targets) if adapted else shape.parameters
    quantized = adapter.type == "qlora"
    notes: list[str] = []

    # ---- model states, sharded as the strategy shards them
    if quantized:  # NF4 linear weights (0.5 byte + ~3% for the double-quantised constants), the rest in 16 bits
        outside = shape.embedding + shape.head
        weights = int((shape.parameters - outside) * 0.5 * 1.03 + outside * 2)
    else:
        weights = shape.parameters * p.weights
    adapter_weights = trainable * 4 if adapter.type in ADAPTER_TYPES else 0  # adapters are kept in float32
    grads = trainable * p.master
    optimizer = int(trainable * ADAM_STATE_BYTES.get(train.optimizer, 8) * p.master / 4)
    largest = shape.largest_tensor if not adapted else max(adapter.r * shape.intermediate, 1)
    scratch = int(1.5 * largest * p.master) if device == "cpu" else (
        0 if train.optimizer == "adamw_torch_fused" else trainable * p.master)
    shard_w = shard_g = shard_o = 1
    if strategy == "fsdp" or (strategy == "deepspeed" and dist.zero_stage == 3):
        shard_w = shard_g = shard_o = world
    elif strategy == "deepspeed" and dist.zero_stage == 2:
        shard_g = shard_o = world
    elif strategy == "deepspeed" and dist.zero_stage == 1:
        shard_o = world
    offloaded = dist.offload != "none" and device == "cuda"
    states = [Term("weights", weights // shard_w + adapter_weights,
                   f"{shape.parameters / 1e6:,.0f}M parameters x {p.weights} bytes" + (
                       f" / {shard_w} processes" if shard_w > 1 else "") + (
                       f" + adapter {trainable / 1e6:,.1f}M x 4" if adapter_weights else ""))]
    if optimizer:
        states.append(Term("optimizer states", 0 if offloaded else optimizer // shard_o,
                           f"{train.optimizer}: {trainable / 1e6:,.1f}M trained parameters"
                           + (f" / {shard_o}" if shard_o > 1 else "") + (" (offloaded to the host)" if offloaded
                                                                          else "")))
    if shard_w > 1:  # the layers gathered at a time (the current one and the one prefetched), and the root's
        states.append(Term("gathered layers", 2 * shape.layer_parameters * p.weights
                           + (shape.embedding + shape.head) * p.weights, "unsharded for compute"))

    # ---- what sits beside the trained model
    beside: list[Term] = []
    if cfg.distributed.nproc_per_node > 0 and strategy == "ddp":
        beside.append(Term("gradient buckets", grads, "DDP's flat copies of the gradients"))
    if footprint.reference == "copy":
        beside.append(Term("reference model", shape.parameters * p.weights, "a frozen copy of the start"))
    for name in (*footprint.frozen_models, *((footprint.critic,) if footprint.critic else ())):
        side = side_shapes.get(name)
        if side is None:
            notes.append(f"{name}: its size is unknown here; not counted")
            continue
        role = "value model" if name == footprint.critic else "frozen model"
        size = side.parameters * p.weights
        if name == footprint.critic:
            critic_trained = side.adapter_parameters(adapter, family_targets) if adapted else side.parameters
            size += critic_trained * (p.master + int(ADAM_STATE_BYTES.get(train.optimizer, 8) * p.master / 4))
        beside.append(Term(role, size, name))

    runtime = RUNTIME_CPU + TOKENIZER_BYTES_PER_TOKEN * shape.vocab if device == "cpu" else CUDA_CONTEXT
    process = [Term("process", runtime, "libraries, data, tokenizer" if device == "cpu" else "CUDA context")]

    # ---- one forward and backward pass of a micro-batch
    length = cfg.data.max_length
    rows = train.micro_batch_size * footprint.sequences_per_row
    tokens = rows * length
    attention = "eager" if cfg.model.attn_implementation == "eager" else "sdpa"
    per_layer = layer_elements(shape, attention, length)
    outside = 2 * shape.hidden + 2 * shape.head_dim
    if gradient_checkpointing:
        saved = tokens * (shape.layers * shape.hidden + outside + per_layer) * p.activations
        how = f"{tokens:,} tokens, checkpointed: {shape.layers} layer inputs + one layer rebuilt"
    else:
        saved = tokens * (shape.layers * per_layer + outside) * p.activations
        how = f"{tokens:,} tokens x {shape.layers} layers x {per_layer:,} values"
    step = [Term("activations", saved, how)]
    scored = rows * (footprint.response_tokens or length)
    if footprint.vocab_loss and not footprint.sequence_classifier:
        if train.chunked_loss and footprint.loss_kernel == "trl":
            tile = min(scored, TRL_TOKENS) * min(shape.vocab, TRL_VOCAB)
            loss = int(tile * 4 * (TRL_TILES_CPU if device == "cpu" else TRL_TILES_GPU)) + scored * shape.hidden * 4
            step.append(Term("logits (chunked)", loss, f"TRL's tiles of {min(scored, TRL_TOKENS):,} x "
                             f"{min(shape.vocab, TRL_VOCAB):,}"))
        elif train.chunked_loss:
            chunk = min(CHUNK_LOGITS, scored * shape.vocab)
            head = shape.embedding * 4 if not adapted and (shape.tied or shape.head) else 0
            loss = int(chunk * 4 * OWN_CHUNKS) + scored * shape.hidden * 4 + head
            step.append(Term("logits (chunked)", loss, f"chunks of {chunk // shape.vocab:,} tokens x "
                             f"{shape.vocab:,}" + (", the head's gradient formed with them" if head else "")))
        else:
            step.append(Term("logits", int(scored * shape.vocab * 4 * FULL_LOGITS_COPIES),
                             f"{scored:,} tokens x {shape.vocab:,} vocabulary, with a shifted copy and log-softmax"))
    accumulating = train.grad_accum_steps > 1 or footprint.generated_sequences > 0
    head_grad = shape.embedding * p.master if not adapted and (shape.tied or shape.head) else 0
    if accumulating:  # the gradients of earlier micro-batches are held through this one
        step.append(Term("gradients", grads // shard_g, "accumulated over micro-batches"))
    elif head_grad:
        step.append(Term("gradients", head_grad, "the head's, formed first in the backward pass"))
    step_total = sum(t.bytes for t in step)
    if not accumulating and grads // shard_g > step_total:  # the backward's end: every gradient, activations freed
        step = [Term("gradients", grads // shard_g, "all of them, at the end of the backward pass")]

    phases = [
        Phase("loading", process + states[:1] + beside + ([Term("initialisation", shape.embedding * p.weights,
                                                                "a preset's random initialisation")]
                                                          if cfg.model.name in _presets() else [])),
        Phase("forward and backward", process + states + beside + step),
        Phase("optimizer step", process + states + beside + [
            Term("gradients", grads // shard_g, ""), Term("optimizer scratch", scratch // shard_o, "")]),
    ]
    if footprint.reloads_final == "always" or (footprint.reloads_final == "with_eval" and cfg.data.eval):
        scoring = min(32 * length, 8192) * (3 * shape.intermediate + 4 * shape.hidden) * p.activations
        phases.append(Phase("final evaluation", process + states + beside + [
            Term("published model", shape.parameters * p.weights, "final/ loaded again to be evaluated"),
            Term("evaluation forward", scoring, "a batch of held-out rows, one layer at a time")]))
    if footprint.generated_sequences:
        sequences = footprint.generated_sequences
        cache = 2 * shape.layers * shape.kv_dim * p.activations * sequences * length
        sampling = sequences * shape.vocab * 4 * 3 + sequences * length * 3 * shape.intermediate * p.activations
        phases.append(Phase("generation", process + states + beside + [
            Term("KV cache", cache, f"{sequences} sequences x {length:,} tokens"),
            Term("sampling", sampling, "last-token logits, one layer's prefill")]))
    return Estimate(device=device, processes=world, strategy=strategy, phases=phases, shape=shape,
                    gradient_checkpointing=gradient_checkpointing, notes=notes)


def _presets() -> Any:
    from llmforge.registry.presets import PRESETS

    return PRESETS
