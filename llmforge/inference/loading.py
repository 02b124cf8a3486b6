"""Load any model name for inference: on the device, in eval mode, in the dtype training computes in."""

from __future__ import annotations

from llmforge.config.schema import ModelConfig
from llmforge.precision import current_device, inference_dtype
from llmforge.registry import LoadedModel, load_model
from llmforge.registry.folders import stop_token_ids


def load_for_inference(name: str, dtype: str = "auto", trust_remote_code: bool = False,
                       merge_adapter: bool = True) -> LoadedModel:
    """A run folder, LoRA run, HF folder, hub id or preset, ready to generate (an adapter merged into its base,
    or attached through peft with `merge_adapter=False`)."""
    loaded = load_model(ModelConfig(name=name, dtype=dtype, trust_remote_code=trust_remote_code),
                        merge_adapter=merge_adapter)
    device = current_device()
    loaded.model.to(device=device, dtype=inference_dtype(dtype, device)).eval()
    return loaded


def stops_of(loaded: LoadedModel) -> list[int]:
    """The token ids generation stops at: EOS and the family's end-of-turn tokens."""
    return stop_token_ids(loaded.tokenizer, loaded.family)
