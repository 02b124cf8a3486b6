"""The tiny presets' tokenizer: a real byte-level BPE, so any UTF-8 text tokenizes.

It is trained by `scripts/train_tokenizer.py` on the built-in data and shipped in
`registry/assets/tiny-bpe/`; every family's tiny preset shares it and differs only in
chat template, the way real families differ.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from llmforge.registry.families import Family

BOS, EOS, PAD = "<|begin_of_text|>", "<|endoftext|>", "<|pad|>"
SPECIAL_TOKENS = [
    EOS, PAD, BOS,
    "<|im_start|>", "<|im_end|>",  # chatml (qwen2, gpt2 presets)
    "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",  # llama 3
    "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]",  # mistral
    "<start_of_turn>", "<end_of_turn>",  # gemma
]
TINY_VOCAB_SIZE = 2048
ASSET = "tiny-bpe/tokenizer.json"


def train_bpe(texts, vocab_size: int = TINY_VOCAB_SIZE) -> Tokenizer:
    """Byte-level BPE; digits split one by one (it makes arithmetic learnable)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


RESERVED = "<|reserved_{}|>"


def tiny_tokenizer(family: Family, vocab_size: int | None = None) -> PreTrainedTokenizerFast:
    """The shipped BPE wrapped for transformers, with the family's chat template.

    `vocab_size` pads its vocabulary with reserved entries up to a real family's size (49,152 for SmolLM2,
    151,936 for Qwen2.5): no merge produces them, so text tokenizes exactly as with the tiny vocabulary, but
    the embeddings, the logits and everything that scales with the vocabulary have the real model's shape."""
    path = resources.files("llmforge.registry") / "assets" / ASSET
    backend = Tokenizer.from_str(_padded(path.read_text(encoding="utf-8"), vocab_size))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS, eos_token=EOS, pad_token=PAD, model_max_length=1 << 30
    )
    tokenizer.chat_template = family.chat_template
    return tokenizer


def _padded(serialized: str, vocab_size: int | None) -> str:
    if vocab_size is None:
        return serialized
    import json

    spec = json.loads(serialized)
    vocab = spec["model"]["vocab"]
    if vocab_size < len(vocab):
        raise ValueError(f"vocab_size {vocab_size} is smaller than the shipped tokenizer's {len(vocab)} tokens")
    vocab.update({RESERVED.format(index): index for index in range(len(vocab), vocab_size)})
    return json.dumps(spec)


# Tokens real families reserve for padding, tried before a new one is added.
PAD_CANDIDATES = (PAD, "<pad>", "[PAD]", "<|finetune_right_pad_id|>", "<|fim_pad|>", "<|reserved_special_token_0|>")


def ensure_distinct_pad(model: Any, tokenizer: Any) -> bool:
    """Give the tokenizer a pad token that is not EOS, and tell the model. True when a token was added.

    A sequence-classification head reads the score at the last token that is not padding;
    with pad == EOS that is the token *before* the final EOS, so a reward model needs its own.
    """
    added = False
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        vocab = tokenizer.get_vocab()
        candidate = next((t for t in PAD_CANDIDATES if t in vocab and vocab[t] != tokenizer.eos_token_id), None)
        if candidate is not None:
            tokenizer.pad_token = candidate
        else:
            added = tokenizer.add_special_tokens({"pad_token": PAD}) > 0
            if len(tokenizer) > model.get_input_embeddings().num_embeddings:
                model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    return added
