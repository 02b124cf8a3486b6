"""The shape of the model a recipe trains, read from its configuration alone: no weights are loaded.

A preset's configuration is built as `load_model` builds it; a folder's, a run's or a cached hub model's
comes from its config.json (an adapter run's from its base). The model is then built on the meta device
(no memory, no initialisation), which counts every parameter exactly for any architecture transformers
knows, and lists the linear layers LoRA would wrap.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmforge.config.schema import AdapterConfig, ModelConfig


@dataclass(frozen=True)
class ModelShape:
    model_type: str
    parameters: int
    embedding: int  # input embedding parameters (a lookup: no matmul, no activations of its own)
    head: int  # output head parameters that are not the embedding's (0 when tied)
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    largest_tensor: int  # elements of the largest single parameter (the optimizer's per-tensor scratch)
    layer_parameters: int  # parameters of one decoder layer (what ZeRO-3/FSDP gather at a time)
    linears: tuple[tuple[str, int, int], ...] = field(default=(), repr=False)  # (module name, in, out)

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def adapter_parameters(self, adapter: AdapterConfig, family_targets: tuple[str, ...] | str) -> int:
        """Trainable parameters of a LoRA/DoRA adapter on this model: r x (in + out) per wrapped linear layer
        (and DoRA's magnitude vector); the last `trainable_layers` layers for freeze."""
        if adapter.type == "freeze":
            return adapter.trainable_layers * self.layer_parameters
        targets = adapter.target_modules or family_targets
        every = targets == "all-linear"
        wanted = set(targets) if not every else set()
        total = 0
        for name, inputs, outputs in self.linears:
            last = name.split(".")[-1]
            if (every and last not in ("lm_head", "score")) or last in wanted:
                total += adapter.r * (inputs + outputs) + (outputs if adapter.type == "dora" else 0)
        return total


def shipped_vocabulary() -> int:
    """Tokens in the shipped tiny BPE (what a preset without a vocab_size of its own embeds)."""
    from importlib import resources

    from llmforge.registry.tokenizer import ASSET

    text = (resources.files("llmforge.registry") / "assets" / ASSET).read_text(encoding="utf-8")
    return len(json.loads(text)["model"]["vocab"])


def model_config(model: ModelConfig) -> Any | None:
    """The transformers config of the model `model.name` names, or None when it cannot be read here (a hub id
    that is not cached on an offline machine)."""
    from transformers import AutoConfig

    from llmforge.registry.folders import adapter_base
    from llmforge.registry.sources import resolve_source

    source = resolve_source(model.name)
    if source.kind == "preset":
        preset = source.preset
        vocab = preset.vocab_size or shipped_vocabulary()
        fields = {**preset.config, **model.config_overrides, "vocab_size": int(math.ceil(vocab / 64) * 64)}
        return AutoConfig.for_model(preset.model_type, **fields)
    folder = Path(source.location)  # a run's final/
    if source.kind in ("run", "adapter") and not (folder / "config.json").is_file():
        base = adapter_base(folder)
        return model_config(model.model_copy(update={"name": base, "config_overrides": {}})) if base else None
    try:
        return AutoConfig.from_pretrained(str(folder) if source.kind != "hub" else source.location,
                                          trust_remote_code=False, revision=model.revision)
    except (OSError, ValueError):
        return None


def shape_of(model: ModelConfig, sequence_classifier: bool = False) -> ModelShape | None:
    """The shape of `model.name` (as a one-score sequence classifier for reward and value models), or None
    when its configuration cannot be read here."""
    config = model_config(model)
    if config is None:
        return None
    return shape_from_config(config, sequence_classifier)


def shape_from_config(config: Any, sequence_classifier: bool = False) -> ModelShape:
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if sequence_classifier:
        config.num_labels = 1
    with torch.device("meta"):
        auto = AutoModelForSequenceClassification if sequence_classifier else AutoModelForCausalLM
        built = auto.from_config(config)
    embedding = built.get_input_embeddings().weight
    head = built.get_output_embeddings() if not sequence_classifier else None
    tied = head is not None and head.weight is embedding
    parameters = sum(p.numel() for p in built.parameters())
    linears = tuple((name, module.in_features, module.out_features) for name, module in built.named_modules()
                    if isinstance(module, torch.nn.Linear))
    hidden = text.hidden_size
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or hidden // heads
    layers = text.num_hidden_layers
    outside = embedding.numel() + (0 if head is None or tied else head.weight.numel())
    return ModelShape(
        model_type=text.model_type, parameters=parameters, embedding=embedding.numel(),
        head=0 if head is None or tied else head.weight.numel(), layers=layers, hidden=hidden,
        intermediate=getattr(text, "intermediate_size", None) or 4 * hidden, heads=heads,
        kv_heads=getattr(text, "num_key_value_heads", None) or heads, head_dim=head_dim, vocab=text.vocab_size,
        tied=tied, largest_tensor=max(p.numel() for p in built.parameters()),
        layer_parameters=(parameters - outside) // max(layers, 1), linears=linears)
