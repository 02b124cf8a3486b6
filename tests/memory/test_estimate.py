"""The memory plan's terms against values worked out by hand, and its activation count against autograd's."""

from __future__ import annotations

import pytest
import torch

from llmforge.config.compose import validate_dict
from llmforge.config.stages import Footprint
from llmforge.memory.estimate import GiB, estimate, layer_elements
from llmforge.memory.shapes import ModelShape, shape_from_config


def recipe(**changes):
    base = {"stage": "sft", "output_dir": "/tmp/x", "model": {"name": "tiny-llama"},
            "data": {"train": [{"name": "arithmetic-sft"}], "max_length": 512},
            "train": {"micro_batch_size": 2, "gradient_checkpointing": False}}
    for section, values in changes.items():
        base.setdefault(section, {}).update(values)
    return validate_dict(base)


SHAPE = ModelShape(model_type="llama", parameters=1_000_000_000, embedding=100_000_000, head=0, layers=10,
                   hidden=1000, intermediate=4000, heads=10, kv_heads=2, head_dim=100, vocab=100_000, tied=True,
                   largest_tensor=100_000_000, layer_parameters=90_000_000)


def phase(e, name):
    return {t.name: t.bytes for t in next(p for p in e.phases if p.name == name).terms}


def test_full_training_holds_weights_gradients_and_adam_states_by_hand():
    e = estimate(recipe(), SHAPE, Footprint(), "cpu", {}, False, "all-linear")
    step = phase(e, "optimizer step")
    assert step["weights"] == 4 * 10**9 and step["gradients"] == 4 * 10**9
    assert step["optimizer states"] == 8 * 10**9  # AdamW: two float32 states per parameter
    assert step["optimizer scratch"] == 1.5 * 100_000_000 * 4  # per tensor on a CPU: the largest one


def test_mixed_precision_model_states_are_the_zero_papers_16_bytes_per_parameter():
    """ZeRO (Rajbhandari et al. 2020): 2 + 2 + 12 bytes per parameter under mixed-precision Adam; here float32
    master weights and gradients (4 + 4) and Adam's two states (8), the same 16."""
    e = estimate(recipe(), SHAPE, Footprint(), "cuda", {}, False, "all-linear")
    step = phase(e, "optimizer step")
    assert step["weights"] + step["gradients"] + step["optimizer states"] == 16 * SHAPE.parameters


def test_zero3_divides_the_model_states_over_the_processes():
    one = phase(estimate(recipe(), SHAPE, Footprint(), "cuda", {}, False, "all-linear"), "optimizer step")
    sharded = recipe(distributed={"nproc_per_node": 8, "strategy": "deepspeed", "zero_stage": 3})
    eight = phase(estimate(sharded, SHAPE, Footprint(), "cuda", {}, False, "all-linear"), "optimizer step")
    assert eight["weights"] == one["weights"] // 8
    assert eight["gradients"] == one["gradients"] // 8 and eight["optimizer states"] == one["optimizer states"] // 8
    assert eight["gathered layers"] == (2 * SHAPE.layer_parameters + SHAPE.embedding) * 4


def test_activations_by_hand_with_and_without_checkpointing():
    per_layer = 4 * 4000 + 8 * 1000 + 2 * 200 + 10 + 2
    assert layer_elements(SHAPE, "sdpa", 512) == per_layer
    tokens = 2 * 512
    lora = recipe(adapter={"type": "lora"})  # full training of 1B: the backward's end (every gradient) is larger
    off = phase(estimate(lora, SHAPE, Footprint(), "cpu", {}, False, "all-linear"), "forward and backward")
    assert off["activations"] == tokens * (10 * per_layer + 2 * 1000 + 2 * 100) * 4
    on = phase(estimate(lora, SHAPE, Footprint(), "cpu", {}, True, "all-linear"), "forward and backward")
    assert on["activations"] == tokens * (10 * 1000 + 2 * 1000 + 2 * 100 + per_layer) * 4


def test_the_whole_logits_cost_more_than_the_chunked_tiles_at_real_lengths():
    long = {"data": {"max_length": 2048}, "train": {"micro_batch_size": 4}, "adapter": {"type": "lora"}}
    chunked = phase(estimate(recipe(**long), SHAPE, Footprint(), "cpu", {}, True, "all-linear"),
                    "forward and backward")["logits (chunked)"]
    plain = recipe(data={"max_length": 2048}, train={"micro_batch_size": 4, "chunked_loss": False},
                   adapter={"type": "lora"})
    whole = phase(estimate(plain, SHAPE, Footprint(), "cpu", {}, True, "all-linear"), "forward and backward")["logits"]
    assert whole == int(4 * 2048 * 100_000 * 4 * 3.0)  # logits, their shifted copy, log-softmax
    assert chunked == int(2**26 * 4 * 2.15) + 4 * 2048 * 1000 * 4  # two chunks and the hidden states' gradient
    assert whole > 5 * chunked  # and the gap grows with the tokens: the chunks stay the same
    trl = phase(estimate(recipe(**long), SHAPE, Footprint(loss_kernel="trl"), "cpu", {}, True, "all-linear"),
                "forward and backward")["logits (chunked)"]
    assert trl == int(4096 * 32768 * 4 * 7.8) + 4 * 2048 * 1000 * 4  # TRL's tiles


def test_a_pair_stage_runs_two_sequences_per_row_and_a_lora_reference_costs_nothing():
    lora = {"adapter": {"type": "lora"}}
    single = estimate(recipe(**lora), SHAPE, Footprint(), "cpu", {}, False, "all-linear")
    paired = estimate(recipe(**lora), SHAPE, Footprint(sequences_per_row=2, reference="adapter"), "cpu", {}, False,
                      "all-linear")
    copied = estimate(recipe(**lora), SHAPE, Footprint(sequences_per_row=2, reference="copy"), "cpu", {}, False,
                      "all-linear")
    a1 = phase(single, "forward and backward")["activations"]
    assert phase(paired, "forward and backward")["activations"] == 2 * a1
    assert "reference model" not in phase(paired, "forward and backward")
    assert phase(copied, "forward and backward")["reference model"] == 4 * SHAPE.parameters


def test_generation_holds_the_kv_cache_of_every_sequence():
    e = estimate(recipe(), SHAPE, Footprint(generated_sequences=16), "cpu", {}, False, "all-linear")
    assert phase(e, "generation")["KV cache"] == 2 * 10 * 200 * 4 * 16 * 512


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
def test_saved_activations_per_layer_are_what_autograd_saves(model_type):
    """The 4 I + 8 h + 2 kv + heads + 2 values per token per layer, counted with saved-tensor hooks (storages
    counted once) as the difference between a 3-layer and a 1-layer model, at a width of its own."""
    from transformers import AutoConfig, AutoModelForCausalLM

    def saved(layers: int) -> tuple[int, ModelShape]:
        config = AutoConfig.for_model(model_type, hidden_size=96, intermediate_size=256, num_hidden_layers=layers,
                                      num_attention_heads=6, num_key_value_heads=2, vocab_size=128,
                                      attention_dropout=0.0)
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").train()
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        seen: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storage = t.untyped_storage()
            if storage.data_ptr() not in params:
                seen[storage.data_ptr()] = storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model.model(input_ids=torch.randint(0, 128, (1, 64)))
        return sum(seen.values()), shape_from_config(config)

    (one, shape), (three, _) = saved(1), saved(3)
    assert (three - one) / 2 / 64 / 4 == layer_elements(shape, "sdpa", 64)


def test_gib_is_binary():
    assert GiB == 1024**3
