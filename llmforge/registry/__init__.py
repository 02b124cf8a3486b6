"""The model catalogue: presets, families, tokenizers, and previous runs as artifacts.

The loaders (registry/models.py) import transformers, so they are looked up on first use: run records and
model folders (registry/runs.py, registry/folders.py) are read, and model names resolved
(registry/sources.py), by commands that never load a model.
"""

from typing import Any

from llmforge.registry.families import FAMILIES, Family, family_for, family_of
from llmforge.registry.presets import PRESETS
from llmforge.registry.sources import ModelSource, resolve_source

_LOADERS = ("LoadedModel", "count_parameters", "load_model")

__all__ = ["FAMILIES", "PRESETS", "Family", "ModelSource", "family_for", "family_of", "resolve_source", *_LOADERS]


def __getattr__(name: str) -> Any:
    if name in _LOADERS:
        from llmforge.registry import models

        return getattr(models, name)
    raise AttributeError(f"module 'llmforge.registry' has no attribute '{name}'")
