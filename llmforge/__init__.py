"""llmforge: the whole life of a language model, from one YAML recipe."""

__version__ = "0.1.0"
