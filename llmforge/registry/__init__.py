"""The model catalogue: presets, families, tokenizers, and previous runs as artifacts."""

from llmforge.registry.families import FAMILIES, Family, family_for, family_of
from llmforge.registry.models import LoadedModel, ModelSource, count_parameters, load_model, resolve_source
from llmforge.registry.presets import PRESETS

__all__ = ["FAMILIES", "PRESETS", "Family", "LoadedModel", "ModelSource", "count_parameters", "family_for", "family_of",
           "load_model", "resolve_source"]
