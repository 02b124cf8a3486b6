"""Model families: what differs between Llama, Qwen2, Mistral, Gemma and GPT-2 for training.

A family is found from a config's `model_type`, so a hub model, a local folder and a
tiny preset of the same architecture get the same chat template, LoRA targets and
sharding unit. Chat templates mark assistant turns with `{% generation %}` so that
assistant-only loss masks come from the template itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CHATML = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

LLAMA3 = (
    "{{- bos_token }}"
    "{%- for message in messages -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{- message['content'] | trim + '<|eot_id|>' }}{% endgeneration %}"
    "{%- else -%}{{- message['content'] | trim + '<|eot_id|>' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif -%}"
)

MISTRAL = (
    "{{- bos_token }}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{{- '[SYSTEM_PROMPT]' + message['content'] + '[/SYSTEM_PROMPT]' }}"
    "{%- elif message['role'] == 'user' -%}{{- '[INST]' + message['content'] + '[/INST]' }}"
    "{%- else -%}{% generation %}{{- message['content'] + eos_token }}{% endgeneration %}"
    "{%- endif -%}"
    "{%- endfor -%}"
)

GEMMA = (
    "{{- bos_token }}"
    "{%- for message in messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{- '<start_of_turn>' + role + '\\n' }}"
    "{%- if role == 'model' -%}"
    "{% generation %}{{- message['content'] | trim + '<end_of_turn>\\n' }}{% endgeneration %}"
    "{%- else -%}{{- message['content'] | trim + '<end_of_turn>\\n' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' }}{%- endif -%}"
)

LLAMA_LIKE_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    chat_template: str
    stop_tokens: tuple[str, ...]
    lora_targets: tuple[str, ...] | str
    decoder_layer: str  # the class FSDP wraps and activation checkpointing repeats
    layers_path: str  # attribute path to the list of decoder layers (freeze tuning)


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family("llama", ("llama",), LLAMA3, ("<|eot_id|>",), LLAMA_LIKE_TARGETS, "LlamaDecoderLayer", "model.layers"),
        Family("qwen2", ("qwen2",), CHATML, ("<|im_end|>",), LLAMA_LIKE_TARGETS, "Qwen2DecoderLayer", "model.layers"),
        Family("mistral", ("mistral",), MISTRAL, (), LLAMA_LIKE_TARGETS, "MistralDecoderLayer", "model.layers"),
        Family("gemma", ("gemma", "gemma2"), GEMMA, ("<end_of_turn>",), LLAMA_LIKE_TARGETS, "GemmaDecoderLayer",
               "model.layers"),
        Family("gpt2", ("gpt2",), CHATML, ("<|im_end|>",), ("c_attn", "c_proj", "c_fc"), "GPT2Block",
               "transformer.h"),
    )
}

GENERIC = Family("generic", (), CHATML, ("<|im_end|>",), "all-linear", "", "model.layers")


def family_for(model_type: str) -> Family:
    """The family of a `config.model_type`; unknown architectures get generic defaults."""
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    return GENERIC


def family_of(model: Any) -> Family:
    """The family of a loaded model (a PEFT wrapper's base model's)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return family_for(getattr(base.config, "model_type", ""))
