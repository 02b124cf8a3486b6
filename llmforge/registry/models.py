"""Turn `model.name` into a model and tokenizer, whatever the name points at.

One code path for all: a preset is built from its config; a local HF folder, a
previous run's output folder and a hub id all go through `from_pretrained`
(`trust_remote_code` only when the recipe asks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from llmforge.config.schema import ModelConfig
from llmforge.errors import UserError, did_you_mean
from llmforge.hub import offline_hint
from llmforge.precision import DTYPES
from llmforge.registry.families import Family, family_for
from llmforge.registry.folders import adapter_base
from llmforge.registry.presets import DROPOUT_OFF, PRESETS, Preset
from llmforge.registry.sources import ADAPTER_FILE, ModelSource, resolve_source
from llmforge.registry.tokenizer import tiny_tokenizer

CONFIG_KWARGS = ("num_labels",)


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: Any
    family: Family
    source: ModelSource
    reloadable_from: str | None = None  # where from_pretrained finds these exact weights (None: built or merged)
    weights_from: str | None = None  # a local folder holding these weights, but not this model's config


def resolve_dtype(name: str) -> torch.dtype:
    """The dtype weights are held in (llmforge.precision decides what they compute in)."""
    return DTYPES.get(name, torch.float32)


def _attn(cfg: ModelConfig) -> str:
    return "sdpa" if cfg.attn_implementation == "auto" else cfg.attn_implementation


def load_tokenizer(source: ModelSource, cfg: ModelConfig, family: Family | None = None) -> Any:
    """The tokenizer of `model.tokenizer` if set, else the model's own; chat template from the family if absent."""
    wanted = cfg.tokenizer or (source.preset.tokenizer if source.preset else None) or source.location
    if wanted in PRESETS and PRESETS[wanted].tokenizer is None:
        return tiny_tokenizer(family or family_for(PRESETS[wanted].model_type), PRESETS[wanted].vocab_size)
    tokenizer = _hub_call(AutoTokenizer.from_pretrained, wanted, cfg, what="tokenizer")
    if family is not None and not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = family.chat_template
    if tokenizer.pad_token is None:
        # Collators mask padding by length, not by pad id, so sharing EOS is safe here.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _hub_call(fn: Any, location: str, cfg: ModelConfig, what: str, **kwargs: Any) -> Any:
    try:
        return fn(location, trust_remote_code=cfg.trust_remote_code, revision=cfg.revision, **kwargs)
    except (OSError, ValueError) as exc:
        hint = did_you_mean(location, PRESETS)
        if "trust_remote_code" in str(exc):
            hint = " It ships its own code: set model.trust_remote_code=true if you trust it."
        raise UserError(f"Could not load the {what} of '{location}': {str(exc).splitlines()[0]}{hint} "
                        f"Presets: {', '.join(PRESETS)}; local folders and completed runs also work."
                        f"{offline_hint()}") from None


def preset_config(preset: Preset, tokenizer: Any, overrides: dict[str, Any]) -> Any:
    base = AutoConfig.for_model(preset.model_type)
    unknown = [key for key in overrides if not hasattr(base, key)]
    if unknown:
        raise UserError(f"model.config_overrides: '{unknown[0]}' is not a field of a {preset.model_type} "
                        f"config.{did_you_mean(unknown[0], base.to_dict())}")
    fields = {**preset.config, **DROPOUT_OFF.get(preset.model_type, {}), **overrides}
    fields["vocab_size"] = int(math.ceil(len(tokenizer) / 64) * 64)
    for role in ("bos", "eos", "pad"):
        fields[f"{role}_token_id"] = getattr(tokenizer, f"{role}_token_id")
    return AutoConfig.for_model(preset.model_type, **fields)


def load_model(
    cfg: ModelConfig, auto_class: Any = AutoModelForCausalLM, merge_adapter: bool = True, **model_kwargs: Any
) -> LoadedModel:
    """Build or load the model named by `cfg.name` (seed the RNG first: presets are random-init); an adapter
    folder is merged into its base unless `merge_adapter` is False (then a PeftModel, frozen)."""
    source = resolve_source(cfg.name)
    dtype = resolve_dtype(cfg.dtype)
    if source.kind == "preset":
        family = family_for(source.preset.model_type)
        tokenizer = load_tokenizer(source, cfg, family)
        # from_pretrained takes config fields (num_labels) as keyword arguments; from_config does not
        fields = {key: model_kwargs.pop(key) for key in CONFIG_KWARGS if key in model_kwargs}
        config = preset_config(source.preset, tokenizer, {**cfg.config_overrides, **fields})
        model = auto_class.from_config(config, attn_implementation=_attn(cfg), dtype=dtype, **model_kwargs)
        return LoadedModel(model=model, tokenizer=tokenizer, family=family, source=source)
    if cfg.config_overrides:
        raise UserError("model.config_overrides only applies to presets built from scratch; "
                        f"'{cfg.name}' is loaded with its own config.")
    if _is_adapter(source):
        return _load_adapter(cfg, source, auto_class, merge_adapter, **model_kwargs)
    config = _hub_call(AutoConfig.from_pretrained, source.location, cfg, what="config")
    family = family_for(config.model_type)
    tokenizer = load_tokenizer(source, cfg, family)
    if len(tokenizer) > config.vocab_size:
        raise UserError(f"model.tokenizer '{cfg.tokenizer}' has {len(tokenizer)} tokens but '{cfg.name}' "
                        f"embeds only {config.vocab_size}; use the model's own tokenizer.")
    # safetensors only: a pytorch_model.bin is a pickle, and nothing is unpickled from a model folder
    model = _hub_call(auto_class.from_pretrained, source.location, cfg, what="weights", dtype=dtype,
                      attn_implementation=_attn(cfg), use_safetensors=True, **model_kwargs)
    reload = str(Path(source.location).resolve()) if source.kind != "hub" else source.location
    return LoadedModel(model=model, tokenizer=tokenizer, family=family, source=source, reloadable_from=reload)


ADAPTER_TASKS = {"CAUSAL_LM": "AutoModelForCausalLM", "SEQ_CLS": "AutoModelForSequenceClassification"}


def _is_adapter(source: ModelSource) -> bool:
    return source.kind != "hub" and (Path(source.location) / ADAPTER_FILE).is_file()


def _load_adapter(cfg: ModelConfig, source: ModelSource, auto_class: Any, merge: bool,
                  **model_kwargs: Any) -> LoadedModel:
    """A PEFT adapter folder: load its base, apply the adapter, merge it in (a plain model again) or keep it."""
    from peft import PeftConfig, PeftModel

    base_name = adapter_base(Path(source.location))
    if not base_name:
        raise UserError(f"{source.location}/{ADAPTER_FILE} does not name its base model "
                        "(base_model_name_or_path); set it to the base model's folder or hub id.")
    base = load_model(cfg.model_copy(update={"name": base_name, "tokenizer": None}), auto_class, **model_kwargs)
    adapter = PeftConfig.from_pretrained(source.location)
    if ADAPTER_TASKS.get(adapter.task_type) not in (None, auto_class.__name__):
        # an SFT adapter under a new reward head (or the reverse): the LoRA weights sit on the shared
        # backbone, whose module names both heads share, so load them without the task-specific wrapper
        adapter.task_type = None
    model = PeftModel.from_pretrained(base.model, source.location, config=adapter)
    if merge:
        model = model.merge_and_unload()
        model.requires_grad_(True)  # peft froze the base to load the adapter; a plain model is trainable again
    tokenizer = load_tokenizer(source, cfg, base.family) if (Path(source.location) / "tokenizer_config.json"
                                                              ).is_file() else base.tokenizer
    return LoadedModel(model=model, tokenizer=tokenizer, family=base.family, source=source)


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
