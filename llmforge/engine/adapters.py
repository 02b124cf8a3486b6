"""`adapter.*`: which weights train. Shared by every stage that fine-tunes.

none trains everything; freeze trains the last N decoder layers; lora/dora wrap the
family's target modules with peft; qlora loads the base in 4 bits (bitsandbytes, CUDA
only) and trains LoRA on top.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch

from llmforge.config.schema import AdapterConfig
from llmforge.errors import UserError
from llmforge.registry.families import Family


def quantization_kwargs(cfg: AdapterConfig) -> dict[str, Any]:
    """Extra from_pretrained arguments the adapter needs (the 4-bit base of QLoRA)."""
    if cfg.type != "qlora":
        return {}
    if not torch.cuda.is_available():
        raise UserError("adapter.type=qlora loads the base model in 4 bits with bitsandbytes, which needs a CUDA "
                        "GPU. On this machine use adapter.type=lora (same adapters, full-precision base).")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UserError("adapter.type=qlora needs bitsandbytes: pip install bitsandbytes.")
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                      bnb_4bit_use_double_quant=True,
                                                      bnb_4bit_compute_dtype=compute)}


def apply_adapter(model: Any, cfg: AdapterConfig, family: Family, task_type: str = "CAUSAL_LM") -> Any:
    """Return the model to train: itself (none/freeze, with requires_grad set) or a PeftModel."""
    if cfg.type == "none":
        return model
    if cfg.type == "freeze":
        return _freeze_all_but_last(model, cfg.trainable_layers, family)
    from peft import get_peft_model, prepare_model_for_kbit_training

    lora = lora_config(model, cfg, family, task_type)
    if cfg.type == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return get_peft_model(model, lora)


def lora_config(model: Any, cfg: AdapterConfig, family: Family, task_type: str = "CAUSAL_LM") -> Any:
    """The peft LoraConfig of a lora/dora/qlora recipe (for trainers that wrap the model themselves).

    task_type SEQ_CLS keeps the new score head trainable and saved beside the adapters.
    """
    from peft import LoraConfig

    targets = cfg.target_modules or family.lora_targets
    if isinstance(targets, tuple):
        targets = list(targets)
    present = {name.split(".")[-1] for name, _ in model.named_modules()}
    if isinstance(targets, list) and not set(targets) & present:
        raise UserError(f"adapter.target_modules {targets} match no module of this model; its linear layers "
                        "include " + ", ".join(sorted(n for n in present if "proj" in n or "c_" in n)[:12])
                        + ". Or use target_modules: all-linear.")
    return LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets,
                      use_dora=cfg.type == "dora", task_type=task_type, bias="none")


def _freeze_all_but_last(model: Any, count: int, family: Family) -> Any:
    try:
        layers = model.get_submodule(family.layers_path)
    except AttributeError:
        raise UserError(f"adapter.type=freeze: cannot find the decoder layers of this model at "
                        f"'{family.layers_path}'; use lora instead.") from None
    if count > len(layers):
        raise UserError(f"adapter.trainable_layers={count}, but the model has {len(layers)} layers.")
    for param in model.parameters():
        param.requires_grad_(False)
    for layer in list(layers)[-count:]:
        for param in layer.parameters():
            param.requires_grad_(True)
    return model
