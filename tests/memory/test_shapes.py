"""Model shapes read from configurations alone: the real-size presets' published sizes, LoRA's trainable count."""

from __future__ import annotations

import pytest

from llmforge.config.schema import AdapterConfig, ModelConfig
from llmforge.memory.shapes import shape_of
from llmforge.registry.families import family_for


@pytest.mark.parametrize(("preset", "parameters", "vocab", "layers"), [
    ("smollm2-135m", 134_515_008, 49_152, 30),  # the published models' parameter counts (tied embeddings)
    ("qwen2.5-0.5b", 494_032_768, 151_936, 24),
    ("llama3-1b", 1_235_814_400, 128_256, 16),
    ("qwen2.5-1.5b", 1_543_714_304, 151_936, 28),
])
def test_real_size_presets_have_the_published_shapes(preset, parameters, vocab, layers):
    shape = shape_of(ModelConfig(name=preset))
    assert (shape.parameters, shape.vocab, shape.layers, shape.tied) == (parameters, vocab, layers, True)
    assert shape.head == 0  # the head is the embedding


def test_the_padded_tokenizer_has_the_vocabulary_and_tokenizes_as_the_tiny_one():
    from llmforge.registry.models import load_tokenizer
    from llmforge.registry.sources import resolve_source
    from llmforge.registry.tokenizer import tiny_tokenizer

    big = load_tokenizer(resolve_source("qwen2.5-0.5b"), ModelConfig(name="qwen2.5-0.5b"))
    tiny = tiny_tokenizer(family_for("qwen2"))
    assert len(big) == 151_936
    text = "What is 12 + 30? Once upon a time, a fox met a crow."
    assert big(text)["input_ids"] == tiny(text)["input_ids"]


@pytest.mark.parametrize("kind", ["lora", "dora"])
def test_adapter_parameters_match_peft(kind):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from llmforge.engine.adapters import lora_config
    from llmforge.memory.shapes import model_config

    adapter = AdapterConfig(type=kind, r=4, alpha=8, target_modules="all-linear")
    model = AutoModelForCausalLM.from_config(model_config(ModelConfig(name="tiny-qwen2")))
    family = family_for("qwen2")
    wrapped = get_peft_model(model, lora_config(model, adapter, family))
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    assert shape_of(ModelConfig(name="tiny-qwen2")).adapter_parameters(adapter, family.lora_targets) == trainable
