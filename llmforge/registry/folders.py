"""What every model folder llmforge writes holds, so tools outside llmforge read it as llmforge does.

One writer for `final/`, a run's saved `base/` and `llmforge export`:
- safetensors weights (or a PEFT adapter), the tokenizer with its chat template;
- `generation_config.json` whose `eos_token_id` lists every token a turn can end with (EOS and the
  family's end-of-turn token), so `model.generate`, `pipeline("text-generation")`, vLLM and llama.cpp
  stop where llmforge stops;
- for an adapter, `llmforge.json` with the base's path relative to the folder, so a run folder that was
  moved or copied elsewhere still finds its base (adapter_config.json keeps the absolute path, which
  plain transformers/peft read).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from llmforge.registry.families import Family

SIDECAR = "llmforge.json"
ADAPTER_CONFIG = "adapter_config.json"
SET_VALUED_KEYS = ("target_modules", "exclude_modules", "modules_to_save")


def stop_token_ids(tokenizer: Any, family: Family) -> list[int]:
    """Every token id that ends a turn: EOS and the family's end-of-turn tokens that the tokenizer has."""
    ids = {tokenizer.eos_token_id}
    vocab = tokenizer.get_vocab()
    ids.update(vocab[token] for token in family.stop_tokens if token in vocab)
    return sorted(i for i in ids if i is not None)


def write_generation_config(folder: Path, model: Any, tokenizer: Any, family: Family) -> None:
    """generation_config.json with the stop tokens, keeping whatever else the model's own config sets."""
    from transformers import GenerationConfig

    existing = getattr(model, "generation_config", None)
    config = GenerationConfig.from_dict(existing.to_dict()) if existing is not None else GenerationConfig()
    recorded = config.eos_token_id
    recorded = [] if recorded is None else [recorded] if isinstance(recorded, int) else list(recorded)
    config.eos_token_id = sorted(set(recorded) | set(stop_token_ids(tokenizer, family)))
    config.pad_token_id = tokenizer.pad_token_id
    if tokenizer.bos_token_id is not None:
        config.bos_token_id = tokenizer.bos_token_id
    config.save_pretrained(str(folder))


def canonical_adapter_config(folder: Path) -> None:
    """Sort the list-valued module names in a saved adapter_config.json.

    peft keeps `target_modules` as a set and writes it in that set's iteration order, which changes from
    process to process (string hashing is salted): two bit-identical adapters would otherwise save
    different bytes, and the run's content fingerprint -- which decides whether a pipeline reruns the
    stages after it -- would change on every rerun.
    """
    path = folder / ADAPTER_CONFIG
    if not path.is_file():
        return
    config = json.loads(path.read_text())
    for key in SET_VALUED_KEYS:
        if isinstance(config.get(key), list):
            config[key] = sorted(config[key])
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def is_generator(model: Any) -> bool:
    """A causal LM (or an adapter on one): what generation_config.json is for."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return bool(getattr(base, "can_generate", lambda: False)())


def save_model_folder(folder: Path, model: Any, tokenizer: Any, family: Family, state_dict: Any = None,
                      published_at: Path | None = None) -> None:
    """Write a complete HF folder (weights or adapter, tokenizer, stop tokens, relative base reference).

    `published_at` is where the folder will live once renamed into place (it is written to a staging
    name first), so the base's relative path is computed from there.
    """
    folder = Path(folder)
    model.save_pretrained(str(folder), state_dict=state_dict, safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    if is_generator(model):
        write_generation_config(folder, model, tokenizer, family)
    canonical_adapter_config(folder)
    record_base(folder, published_at or folder)


def record_base(folder: Path, published_at: Path) -> None:
    """Beside adapter_config.json, the base's path relative to where the folder is published."""
    path = folder / ADAPTER_CONFIG
    if not path.is_file():
        return
    base = json.loads(path.read_text()).get("base_model_name_or_path")
    if not base or not Path(base).is_absolute():
        return
    relative = os.path.relpath(base, Path(published_at).resolve())
    (folder / SIDECAR).write_text(json.dumps({"base_model_relative": relative}, indent=2) + "\n")


def adapter_base(folder: Path) -> str | None:
    """The base model of an adapter folder: the recorded path if it exists, else the one relative to the
    folder (the run folder was moved or copied), else the recorded name (a hub id)."""
    folder = Path(folder)
    recorded = json.loads((folder / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if recorded and Path(recorded).exists():
        return recorded
    sidecar = folder / SIDECAR
    if sidecar.is_file():
        relative = json.loads(sidecar.read_text()).get("base_model_relative")
        if relative and (folder / relative).exists():
            return str((folder / relative).resolve())
    return recorded


def relative_reference(target: Path, from_dir: Path) -> str:
    return os.path.relpath(Path(target).resolve(), Path(from_dir).resolve())


def referenced_run(parent: dict[str, Any], from_dir: Path) -> Path | None:
    """The run folder a run.json parent entry names: relative to the run that records it (it may have been
    moved with it), else the absolute path recorded."""
    relative = parent.get("run_dir_relative")
    if relative is not None:
        candidate = Path(from_dir) / relative
        if candidate.exists():
            return candidate.resolve()
    recorded = parent.get("run_dir")
    return Path(recorded) if recorded else None
