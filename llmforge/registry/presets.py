"""Presets: architectures built from a config with random weights.

The `tiny-*` presets are sized to train on a laptop CPU in minutes (about 1M
parameters); `llama3-1b` has the Llama 3.2 1B shape for pretraining from scratch on a
GPU. Every preset is a real transformers architecture, so its output is a normal HF
folder that transformers and vLLM load as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TINY = dict(hidden_size=128, intermediate_size=352, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=1024)


@dataclass(frozen=True)
class Preset:
    name: str
    model_type: str
    description: str
    config: dict[str, Any] = field(default_factory=dict)
    tokenizer: str | None = None  # a hub id/folder; None = the shipped tiny BPE


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("tiny-llama", "llama", "Llama-style (RMSNorm, SwiGLU, RoPE, GQA), ~1M params", dict(TINY)),
        Preset("tiny-qwen2", "qwen2", "Qwen2-style (QKV bias, chatml template), ~1M params", dict(TINY)),
        Preset("tiny-mistral", "mistral", "Mistral-style (sliding window attention), ~1M params",
               dict(TINY, sliding_window=256)),
        Preset("tiny-gemma", "gemma", "Gemma-style (GeGLU, tied embeddings, scaled embeddings), ~1M params",
               dict(TINY, head_dim=32)),
        Preset("tiny-gpt2", "gpt2", "GPT-2-style (LayerNorm, learned positions, GELU MLP), ~1M params",
               dict(n_embd=128, n_layer=4, n_head=4, n_positions=1024)),
        Preset("llama3-1b", "llama", "Llama 3.2 1B shape, random init, for pretraining on GPUs",
               dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                    num_key_value_heads=8, max_position_embeddings=8192, rope_theta=500000.0,
                    tie_word_embeddings=True),
               tokenizer=None),
    )
}

# Dropout off everywhere: tiny data does not need it, and RL needs it off.
DROPOUT_OFF = {
    "llama": {"attention_dropout": 0.0},
    "qwen2": {"attention_dropout": 0.0},
    "mistral": {"attention_dropout": 0.0},
    "gemma": {"attention_dropout": 0.0},
    "gpt2": {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0},
}
