"""The models one server answers for: names, the weights behind each, and one engine per base.

Each MODEL argument is anything `model.name` accepts. LoRA runs (adapter folders) that share a base
are served from one copy of that base with every adapter attached under its served name, as vLLM's
`--lora-modules` does; the base itself, when it is also named, answers from the same copy with no
adapter. Anything else (full fine-tunes, HF folders, presets) gets its own copy and engine.
Names default to the folder's name (`runs/tiny-rlhf/dpo` -> `dpo`), the argument as given where two
folders share a name; `NAME=MODEL` sets a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmforge.config.schema import ModelConfig
from llmforge.errors import UserError
from llmforge.registry import LoadedModel, load_model, resolve_source
from llmforge.registry.folders import adapter_base
from llmforge.registry.sources import ADAPTER_FILE
from llmforge.serve.engine import BatchingEngine


@dataclass
class Served:
    """One name the API answers for."""

    name: str
    argument: str  # what was given on the command line
    loaded: LoadedModel  # the base's model and tokenizer (a PeftModel when adapters are attached)
    engine: BatchingEngine
    adapter: str | None  # the adapter that answers for this name (None: the model itself)
    context: int  # prompt + completion tokens the model's positions allow
    created: int


def _adapter_location(model: str) -> str | None:
    """The adapter folder behind a MODEL argument (a LoRA run or a bare adapter folder), else None."""
    source = resolve_source(model)
    if source.kind in ("run", "adapter", "folder") and (Path(source.location) / ADAPTER_FILE).is_file():
        return source.location
    return None


def _same(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return a == b


def load_served(pairs: list[tuple[str, str]], device: str, engine_options: dict[str, Any]) -> dict[str, Served]:
    """Load every model once (adapters onto their shared base) and start one engine per copy."""
    import time

    from peft import PeftModel

    from llmforge.inference.loading import stops_of
    from llmforge.precision import inference_dtype

    adapters = {name: _adapter_location(model) for name, model in pairs}
    groups: dict[str, list[str]] = {}  # base location -> served names of adapters on it
    for name, location in adapters.items():
        if location:
            base = adapter_base(Path(location))
            if not base:
                raise UserError(f"{location}/{ADAPTER_FILE} does not name its base model (base_model_name_or_path).")
            key = next((k for k in groups if _same(k, base)), base)
            groups.setdefault(key, []).append(name)
    served: dict[str, Served] = {}
    created = int(time.time())

    def start(loaded: LoadedModel) -> tuple[BatchingEngine, int]:
        loaded.model.to(device=device, dtype=inference_dtype("auto", device)).eval()
        pad = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
        engine = BatchingEngine(loaded.model, stops_of(loaded), pad, **engine_options)
        context = int(getattr(loaded.model.config, "max_position_embeddings", 0) or 2048)
        return engine, context

    for base, names in groups.items():
        loaded = load_model(ModelConfig(name=base))
        model = None
        for name in names:
            location = adapters[name]
            if model is None:
                model = PeftModel.from_pretrained(loaded.model, location, adapter_name=name)
            else:
                model.load_adapter(location, adapter_name=name)
        loaded.model = model
        engine, context = start(loaded)
        for name in names:
            argument = dict(pairs)[name]
            served[name] = Served(name, argument, loaded, engine, name, context, created)
        for name, model_arg in pairs:  # the base itself, when it is served too
            if not adapters[name] and _same(resolve_source(model_arg).location, base):
                served[name] = Served(name, model_arg, loaded, engine, None, context, created)
    for name, model_arg in pairs:
        if name in served:
            continue
        loaded = load_model(ModelConfig(name=model_arg))
        engine, context = start(loaded)
        served[name] = Served(name, model_arg, loaded, engine, None, context, created)
    return {name: served[name] for name, _ in pairs}
