"""Generate from a loaded model: what `generate`, `chat`, eval and the server share.

Prompts are rendered with the model's chat template; generation stops at EOS or the
family's end-of-turn token; batches are left-padded so every prompt ends where
generation starts. `stream` yields the text of one completion as it is produced.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import torch

from llmforge.data.chat import encode_prompt
from llmforge.data.formats import Message
from llmforge.inference.loading import stops_of
from llmforge.registry import LoadedModel
from llmforge.rl.core import left_pad


def sampling_kwargs(temperature: float, top_p: float) -> dict[str, Any]:
    """generate() arguments: sampling at `temperature`/`top_p`, or greedy at temperature 0."""
    if temperature > 0:
        return {"do_sample": True, "temperature": temperature, "top_p": top_p}
    return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}


def encode(loaded: LoadedModel, prompt: list[Message] | str, chat: bool = True) -> list[int]:
    """A conversation (or a plain string as one user turn) with the generation prompt; raw text as it is."""
    if not chat:
        return loaded.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    return encode_prompt(loaded.tokenizer, messages)


@torch.no_grad()
def generate_ids(loaded: LoadedModel, prompts: list[list[int]], max_new_tokens: int = 64,
                 temperature: float = 0.0, top_p: float = 1.0) -> list[list[int]]:
    """Completions (token ids, stop token excluded) for already-encoded prompts, one batch."""
    model, tokenizer = loaded.model, loaded.tokenizer
    pad = tokenizer.pad_token_id
    input_ids, attention = left_pad(prompts, pad)
    width = input_ids.shape[1]
    stops = stops_of(loaded)
    out = model.generate(input_ids=input_ids.to(model.device), attention_mask=attention.to(model.device),
                         max_new_tokens=max_new_tokens, eos_token_id=stops, pad_token_id=pad,
                         **sampling_kwargs(temperature, top_p))
    completions = []
    for row in out[:, width:].tolist():
        cut = next((i for i, token in enumerate(row) if token in stops), len(row))
        completions.append(row[:cut])
    return completions


def generate(loaded: LoadedModel, prompts: list[list[Message]] | list[str], chat: bool = True,
             max_new_tokens: int = 64, temperature: float = 0.0, top_p: float = 1.0,
             batch_size: int = 32) -> list[str]:
    encoded = [encode(loaded, p, chat) for p in prompts]
    texts = []
    for start in range(0, len(encoded), batch_size):
        batch = generate_ids(loaded, encoded[start:start + batch_size], max_new_tokens, temperature, top_p)
        texts += [loaded.tokenizer.decode(ids, skip_special_tokens=True) for ids in batch]
    return texts


def stream(loaded: LoadedModel, prompt: list[Message] | str, chat: bool = True, max_new_tokens: int = 64,
           temperature: float = 0.0, top_p: float = 1.0) -> Iterator[str]:
    """The completion of one prompt, piece by piece as tokens are generated (transformers' streamer, with
    generation in a worker thread); the pieces join to what `generate` returns."""
    from transformers import TextIteratorStreamer

    model, tokenizer = loaded.model, loaded.tokenizer
    ids = torch.tensor([encode(loaded, prompt, chat)], device=model.device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "max_new_tokens": max_new_tokens,
              "eos_token_id": stops_of(loaded), "pad_token_id": tokenizer.pad_token_id, "streamer": streamer,
              **sampling_kwargs(temperature, top_p)}
    failure: list[BaseException] = []

    def run() -> None:
        try:
            with torch.no_grad():
                model.generate(**kwargs)
        except BaseException as exc:  # surfaced in the caller's thread below
            failure.append(exc)
            streamer.end()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    yield from (piece for piece in streamer if piece)
    worker.join()
    if failure:
        raise failure[0]
