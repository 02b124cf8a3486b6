"""Presets: architectures built from a config with random weights.

The `tiny-*` presets are sized to train on a laptop CPU in minutes (about 1M
parameters). The real-size presets copy the published configurations of real models
(SmolLM2-135M, Qwen2.5-0.5B and 1.5B, Llama 3.2 1B), vocabulary included: their
tokenizer is the shipped BPE padded to the family's vocabulary size, so embeddings,
logits, optimizer states and speed are those of the real model while no hub is needed
(weights are random: they measure memory and speed, or start a pretraining run). Every
preset is a real transformers architecture, so its output is a normal HF folder that
transformers and vLLM load as they are.
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
    vocab_size: int | None = None  # the shipped BPE padded to this many tokens (the real family's vocabulary)


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
        Preset("smollm2-135m", "llama", "SmolLM2-135M shape (30 layers, vocab 49,152, tied), random init, 135M params",
               dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5,
                    tie_word_embeddings=True),
               vocab_size=49_152),
        Preset("qwen2.5-0.5b", "qwen2", "Qwen2.5-0.5B shape (24 layers, vocab 151,936, tied), random init, 494M params",
               dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                    num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
                    tie_word_embeddings=True),
               vocab_size=151_936),
        Preset("llama3-1b", "llama", "Llama 3.2 1B shape (16 layers, vocab 128,256, tied), random init, 1.24B params",
               dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                    num_key_value_heads=8, max_position_embeddings=8192, rope_theta=500000.0, rms_norm_eps=1e-5,
                    tie_word_embeddings=True),
               vocab_size=128_256),
        Preset("qwen2.5-1.5b", "qwen2", "Qwen2.5-1.5B shape (28 layers, vocab 151,936, tied), random init, 1.54B "
               "params", dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                              num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1000000.0,
                              rms_norm_eps=1e-6, tie_word_embeddings=True),
               vocab_size=151_936),
        # GPU sizes: built with random weights for pretraining on GPUs, and planned on any machine (llmforge plan)
        Preset("qwen2.5-7b", "qwen2", "Qwen2.5-7B shape (28 layers, vocab 152,064, untied), random init, 7.6B params; "
               "for GPUs", dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                                num_key_value_heads=4, max_position_embeddings=32768, rope_theta=1000000.0,
                                rms_norm_eps=1e-6, tie_word_embeddings=False),
               vocab_size=152_064),
        Preset("llama3-70b", "llama", "Llama 3.1 70B shape (80 layers, vocab 128,256, untied), random init, 70.6B "
               "params; for GPUs", dict(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                                         num_attention_heads=64, num_key_value_heads=8, max_position_embeddings=131072,
                                         rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=False),
               vocab_size=128_256),
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
