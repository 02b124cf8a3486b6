"""Load any model name for inference and generate from it: what generate, chat and eval share.

Prompts are rendered with the model's chat template; generation stops at EOS or the
family's end-of-turn token; batches are left-padded so every prompt ends where
generation starts.
"""

from __future__ import annotations

from typing import Any

import torch

from llmforge.config.schema import ModelConfig
from llmforge.data.chat import encode_prompt
from llmforge.data.formats import Message
from llmforge.registry import LoadedModel, load_model


def load_for_inference(name: str, dtype: str = "auto", trust_remote_code: bool = False) -> LoadedModel:
    loaded = load_model(ModelConfig(name=name, dtype=dtype, trust_remote_code=trust_remote_code))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and dtype == "auto" and torch.cuda.is_bf16_supported():
        loaded.model.to(torch.bfloat16)
    loaded.model.to(device).eval()
    return loaded


def stop_token_ids(loaded: LoadedModel) -> list[int]:
    tokenizer = loaded.tokenizer
    ids = {tokenizer.eos_token_id}
    vocab = tokenizer.get_vocab()
    ids.update(vocab[token] for token in loaded.family.stop_tokens if token in vocab)
    return sorted(i for i in ids if i is not None)


@torch.no_grad()
def generate_ids(loaded: LoadedModel, prompts: list[list[int]], max_new_tokens: int = 64,
                 temperature: float = 0.0, top_p: float = 1.0) -> list[list[int]]:
    """Completions (token ids, stop token excluded) for already-encoded prompts, one batch."""
    model, tokenizer = loaded.model, loaded.tokenizer
    width = max(len(p) for p in prompts)
    pad = tokenizer.pad_token_id
    input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    for row, ids in enumerate(prompts):
        input_ids[row, width - len(ids):] = torch.tensor(ids)
        attention[row, width - len(ids):] = 1
    stops = stop_token_ids(loaded)
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {
        "do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    out = model.generate(input_ids=input_ids.to(model.device), attention_mask=attention.to(model.device),
                         max_new_tokens=max_new_tokens, eos_token_id=stops, pad_token_id=pad, **sampling)
    completions = []
    for row in out[:, width:].tolist():
        cut = next((i for i, token in enumerate(row) if token in stops), len(row))
        completions.append(row[:cut])
    return completions


def generate(loaded: LoadedModel, prompts: list[list[Message]] | list[str], chat: bool = True,
             max_new_tokens: int = 64, temperature: float = 0.0, top_p: float = 1.0,
             batch_size: int = 32) -> list[str]:
    tokenizer = loaded.tokenizer
    encoded = [
        encode_prompt(tokenizer, p if isinstance(p, list) else [{"role": "user", "content": p}])
        if chat else tokenizer(p, add_special_tokens=False)["input_ids"]
        for p in prompts
    ]
    texts = []
    for start in range(0, len(encoded), batch_size):
        batch = generate_ids(loaded, encoded[start:start + batch_size], max_new_tokens, temperature, top_p)
        texts += [tokenizer.decode(ids, skip_special_tokens=True) for ids in batch]
    return texts


def exact_match(loaded: LoadedModel, items: list[dict[str, Any]], max_new_tokens: int = 12) -> dict[str, Any]:
    """Share of prompts whose first integer in the greedy completion equals `answer`."""
    from llmforge.data.builtin.arithmetic import is_correct

    completions = generate(loaded, [item["messages"] for item in items], max_new_tokens=max_new_tokens)
    correct = [is_correct(text, item["answer"]) for text, item in zip(completions, items, strict=True)]
    samples = [{"prompt": item["messages"][-1]["content"], "completion": text, "answer": item["answer"]}
               for item, text in list(zip(items, completions, strict=True))[:5]]
    return {"accuracy": sum(correct) / len(correct), "samples": samples}
