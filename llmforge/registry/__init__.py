"""The model catalogue: presets, families, tokenizers, and previous runs as artifacts.

The loaders (registry/models.py) import transformers, so they are looked up on first use: run records and
model folders (registry/runs.py, registry/folders.py) are read by commands that never load a model.
"""

from typing import Any

from llmforge.registry.families import FAMILIES, Family, family_for, family_of
from llmforge.registry.presets import PRESETS

_LOADERS = ("LoadedModel", "ModelSource", "count_parameters", "load_model", "resolve_source")

__all__ = ["FAMILIES", "PRESETS", "Family", "family_for", "family_of", *_LOADERS]


def __getattr__(name: str) -> Any:
    if name in _LOADERS:
        from llmforge.registry import models

        return getattr(models, name)
    raise AttributeError(f"module 'llmforge.registry' has no attribute '{name}'")
