"""Recipes: YAML with `extends:`, dotted overrides, one strict schema."""

from llmforge.config.loader import dump, load_config, load_raw, validate
from llmforge.config.schema import RunConfig

__all__ = ["RunConfig", "dump", "load_config", "load_raw", "validate"]
