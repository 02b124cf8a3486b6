"""Which weights train under each adapter.type, counted by hand for tiny-llama.

tiny-llama: 4 layers, hidden 128, MLP 352, 4 heads of 32, 2 KV heads (k/v project to 64).
LoRA r=8 adds r*(in+out) per target:
  q 8*(128+128)=2048, k 8*(128+64)=1536, v 1536, o 2048, gate/up 8*(128+352)=3840 each, down 3840
  -> 18688 per layer, 74752 for 4 layers.
DoRA adds one magnitude per output feature: 128+64+64+128+352+352+128 = 1216 per layer -> +4864.
freeze (last 2 layers): attention 128*128*2 + 128*64*2 = 49152, MLP 3*128*352 = 135168, norms 2*128
  -> 184576 per layer, 369152 for 2.
"""

from __future__ import annotations

import pytest
import torch

from llmforge.config.schema import AdapterConfig, ModelConfig
from llmforge.engine.adapters import apply_adapter, quantization_kwargs
from llmforge.errors import UserError
from llmforge.registry import load_model


def _trainable(adapter: AdapterConfig) -> int:
    torch.manual_seed(0)
    loaded = load_model(ModelConfig(name="tiny-llama"))
    model = apply_adapter(loaded.model, adapter, loaded.family)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("adapter, expected", [
    (AdapterConfig(type="lora", r=8), 74752),
    (AdapterConfig(type="dora", r=8), 74752 + 4864),
    (AdapterConfig(type="lora", r=8, target_modules=["q_proj", "v_proj"]), 4 * (2048 + 1536)),
    (AdapterConfig(type="freeze", trainable_layers=2), 369152),
])
def test_trainable_parameter_counts(adapter, expected):
    assert _trainable(adapter) == expected


def test_full_training_trains_everything():
    loaded = load_model(ModelConfig(name="tiny-llama"))
    total = sum(p.numel() for p in loaded.model.parameters())
    assert _trainable(AdapterConfig(type="none")) == total


def test_all_linear_targets_every_projection():
    assert _trainable(AdapterConfig(type="lora", r=8, target_modules="all-linear")) == 74752


def test_unknown_target_modules_are_a_user_error():
    with pytest.raises(UserError, match="match no module"):
        _trainable(AdapterConfig(type="lora", target_modules=["query_key_value"]))


def test_freeze_more_layers_than_exist():
    with pytest.raises(UserError, match="trainable_layers=9"):
        _trainable(AdapterConfig(type="freeze", trainable_layers=9))


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU QLoRA is available")
def test_qlora_on_cpu_is_a_clear_error():
    with pytest.raises(UserError, match="needs a CUDA GPU.*adapter.type=lora"):
        quantization_kwargs(AdapterConfig(type="qlora"))


def test_saved_adapter_config_is_the_same_bytes_whatever_the_set_order(tmp_path):
    """peft writes target_modules in set order, salted per process; the saved file must not depend on it."""
    import json

    from peft import LoraConfig, PeftConfig

    from llmforge.registry.folders import canonical_adapter_config

    saved = []
    for order in (["q_proj", "v_proj", "o_proj"], ["o_proj", "q_proj", "v_proj"]):
        folder = tmp_path / "-".join(order)
        LoraConfig(r=4, target_modules=order).save_pretrained(folder)
        config = json.loads((folder / "adapter_config.json").read_text())
        config["target_modules"] = order  # what a process with that set order writes
        (folder / "adapter_config.json").write_text(json.dumps(config))
        canonical_adapter_config(folder)
        saved.append((folder / "adapter_config.json").read_bytes())
        assert set(PeftConfig.from_pretrained(folder).target_modules) == set(order)
    assert saved[0] == saved[1]
    assert json.loads(saved[0])["target_modules"] == ["o_proj", "q_proj", "v_proj"]
