"""`llmforge export`: any model name -> a plain Hugging Face folder (LoRA merged into its base).

The result loads with transformers alone, no peft: safetensors weights, config, the tokenizer
with its chat template, and the stop tokens in generation_config.json. Written to a staging folder and renamed into place.
"""

from __future__ import annotations

from pathlib import Path

from llmforge.config.schema import ModelConfig
from llmforge.engine.files import publish_dir
from llmforge.errors import UserError
from llmforge.registry import load_model
from llmforge.registry.folders import save_model_folder


def export(name: str, out: str, force: bool = False) -> Path:
    target = Path(out)
    if target.exists() and any(target.iterdir()) and not force:
        raise UserError(f"{target} exists and is not empty; pass --force to replace it (it is replaced only "
                        "once the new export is complete).")
    loaded = load_model(ModelConfig(name=name))  # adapters are merged on load
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.staging")
    save_model_folder(staging, loaded.model, loaded.tokenizer, loaded.family)
    publish_dir(staging, target)
    return target
