"""The batching engine behind `llmforge serve`: many requests, one forward per decoding step.

Requests wait in a bounded queue; a scheduler thread takes every waiting request (up to
`max_batch_size`) into one batch, prefills their left-padded prompts together and decodes them
together, one token per row per step, with a KV cache. A row leaves the batch the step it stops
(a stop token, `max_tokens`, a stop string seen by the caller, or a client that went away) and
the cache drops its row (`DynamicCache.batch_select_indices`), so the step costs what the rows
still running cost; requests that arrive meanwhile start with the next batch. Each row samples
with its own temperature, top-p and seeded generator, so a request's answer does not depend on
what it was batched with (greedy rows are bit-identical to `llmforge generate`'s up to the
floating-point effects of batch width). Several LoRA adapters on one base decode in one batch:
peft routes each row to its adapter (`adapter_names`, "__base__" for the base itself).

Why not transformers' continuous-batching manager here: on CPUs its per-token scheduling costs more
than the padding it saves at these sizes (measured in `rl/sampling.py`: 2-30 s against 0.8-1.5 s for
64 completions); `llmforge bench --only serve` measures this engine against one-at-a-time serving.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from llmforge.rl.core import left_pad, position_ids

log = logging.getLogger("llmforge")

BASE = "__base__"  # peft's name for "no adapter" in a mixed batch


class QueueFull(Exception):
    """The engine's queue holds `max_queue` requests already: the caller should retry later."""


@dataclass
class Sampling:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None


@dataclass
class Request:
    """One completion: its prompt, how to sample it, and where its tokens go (`emit(token_id)` per token,
    then `emit(None)` once with `finish_reason` set)."""

    prompt: list[int]
    sampling: Sampling
    emit: Callable[[int | None], None]
    adapter: str | None = None
    finish_reason: str | None = None
    error: str | None = None
    generated: int = 0
    cancelled: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.perf_counter)

    def cancel(self) -> None:
        """Stop generating for this request (a stop string found, or the client went away)."""
        self.cancelled.set()


class BatchingEngine:
    """One model (optionally with LoRA adapters) served to many callers by one scheduler thread."""

    def __init__(self, model: Any, stop_ids: list[int], pad_id: int, max_batch_size: int = 32,
                 max_queue: int = 256, on_batch: Callable[[int], None] | None = None, start: bool = True) -> None:
        self.model = model
        self.stop_ids = set(stop_ids)
        self.pad_id = pad_id
        self.max_batch_size = max_batch_size
        self.waiting: queue.Queue[Request] = queue.Queue(maxsize=max_queue)
        self.running = 0
        self.on_batch = on_batch
        self.device = next(model.parameters()).device
        self.uses_adapters = hasattr(model, "peft_config")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="llmforge-engine", daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        self._thread.start()

    @property
    def depth(self) -> int:
        """Requests waiting for a batch, plus those in the running one."""
        return self.waiting.qsize() + self.running

    def submit(self, request: Request) -> None:
        try:
            self.waiting.put_nowait(request)
        except queue.Full:
            raise QueueFull() from None

    def close(self, timeout: float = 30.0) -> None:
        """Finish the running batch, fail whatever still waits, stop the thread."""
        self._stop.set()
        self._thread.join(timeout)
        while True:
            try:
                request = self.waiting.get_nowait()
            except queue.Empty:
                break
            request.finish_reason, request.error = "error", "the server is shutting down"
            request.emit(None)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                first = self.waiting.get(timeout=0.1)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self.max_batch_size:
                try:
                    batch.append(self.waiting.get_nowait())
                except queue.Empty:
                    break
            batch = [r for r in batch if not self._finish_if_cancelled(r)]
            if not batch:
                continue
            self.running = len(batch)
            try:
                self._decode(batch)
            except Exception as exc:  # one bad batch must not take the server down
                log.exception("generation failed")
                for request in batch:
                    if request.finish_reason is None:
                        request.finish_reason, request.error = "error", f"generation failed: {exc}"
                        request.emit(None)
            finally:
                self.running = 0

    @staticmethod
    def _finish_if_cancelled(request: Request) -> bool:
        if request.cancelled.is_set():
            request.finish_reason = "cancelled"
            request.emit(None)
            return True
        return False

    @torch.no_grad()
    def _decode(self, batch: list[Request]) -> None:
        from transformers import DynamicCache

        if self.on_batch:
            self.on_batch(len(batch))
        ids, mask = left_pad([r.prompt for r in batch], self.pad_id)
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = position_ids(mask)
        generators = [_generator(r.sampling.seed) for r in batch]
        cache = DynamicCache(config=self.model.config)
        active = list(range(len(batch)))
        extra = {"adapter_names": [r.adapter or BASE for r in batch]} if self.uses_adapters else {}
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                            use_cache=True, logits_to_keep=1, **extra).logits[:, -1, :]
        while True:
            tokens = [sample(logits[i], batch[r].sampling, generators[r]) for i, r in enumerate(active)]
            keep = []
            for i, (r, token) in enumerate(zip(active, tokens, strict=True)):
                if self._step(batch[r], token):
                    keep.append(i)
            if not keep:
                return
            if len(keep) < len(active):
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                mask, positions = mask[index], positions[index]
                active = [active[i] for i in keep]
                if extra:
                    extra = {"adapter_names": [batch[r].adapter or BASE for r in active]}
                tokens = [tokens[i] for i in keep]
            self.running = len(active)
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            positions = positions[:, -1:] + 1
            step_ids = torch.tensor(tokens, device=self.device).unsqueeze(1)
            logits = self.model(input_ids=step_ids, attention_mask=mask, position_ids=positions,
                                past_key_values=cache, use_cache=True, **extra).logits[:, -1, :]

    def _step(self, request: Request, token: int) -> bool:
        """Hand `token` to its request; whether the request goes on."""
        if request.cancelled.is_set():
            request.finish_reason = request.finish_reason or "cancelled"
            request.emit(None)
            return False
        if token in self.stop_ids:
            request.finish_reason = "stop"
            request.emit(None)
            return False
        request.generated += 1
        request.emit(token)
        if request.cancelled.is_set() or request.generated >= request.sampling.max_tokens:
            request.finish_reason = request.finish_reason or "length"
            request.emit(None)
            return False
        return True


_seeds = itertools.count()


def _generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item()) + next(_seeds))
    return generator


def sample(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator) -> int:
    """One token from one row's logits: argmax at temperature 0, else nucleus sampling at the temperature."""
    if sampling.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float().cpu() / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        ordered, order = probs.sort(descending=True)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        outside = ordered.cumsum(-1) - ordered >= sampling.top_p
        probs = torch.zeros_like(probs).scatter(0, order, ordered.masked_fill(outside, 0.0))
    return int(torch.multinomial(probs, 1, generator=generator))
