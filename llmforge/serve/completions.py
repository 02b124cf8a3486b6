"""One request's completions between the engine's thread and the event loop: token ids in, text out.

The engine calls `emit` from its thread; the loop reads an asyncio queue. A completion that ends on a
stop string cancels its engine request, so the row leaves the batch at the next step; a client that goes
away cancels every completion of its request the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from llmforge.serve.engine import QueueFull, Request, Sampling
from llmforge.serve.models import Served
from llmforge.serve.protocol import ApiError
from llmforge.serve.text import TextStream

DEFAULT_MAX_TOKENS = 256


@dataclass
class Piece:
    index: int
    text: str
    finish_reason: str | None = None  # set on a completion's last piece


class Completion:
    def __init__(self, served: Served, prompt: list[int], sampling: Sampling, stops: list[str],
                 loop: asyncio.AbstractEventLoop) -> None:
        self.queue: asyncio.Queue[int | None] = asyncio.Queue()
        self.stream = TextStream(served.loaded.tokenizer, stops)
        self.request = Request(prompt, sampling, adapter=served.adapter,
                               emit=lambda token: loop.call_soon_threadsafe(self.queue.put_nowait, token))
        self.tokens = 0
        self.first_token_at: float | None = None

    async def pieces(self) -> AsyncIterator[tuple[str, str | None]]:
        """(text, None) as text becomes safe to send, then ("", finish_reason) or (tail, finish_reason)."""
        while True:
            token = await self.queue.get()
            if token is None:
                if self.request.finish_reason == "error":
                    raise ApiError(503, self.request.error or "generation failed", kind="server_error",
                                   code="generation_failed")
                yield self.stream.finish(), ("length" if self.request.finish_reason == "length" else "stop")
                return
            self.tokens += 1
            self.first_token_at = self.first_token_at or time.perf_counter()
            piece = self.stream.push(token)
            if self.stream.stopped:
                self.request.cancel()
                yield piece, "stop"
                return
            if piece:
                yield piece, None


class Batch:
    """The `n` completions of each prompt of one API request, submitted together."""

    def __init__(self, served: Served, prompts: list[list[int]], n: int, limit: int | None, temperature: float,
                 top_p: float, seed: int | None, stops: list[str]) -> None:
        loop = asyncio.get_running_loop()
        self.started = time.perf_counter()
        self.prompt_tokens = sum(len(p) for p in prompts)
        self.completions = []
        for prompt in prompts:
            room = served.context - len(prompt)
            if room < 1 or (limit and limit > room):
                raise ApiError(400, f"This model's maximum context length is {served.context} tokens; the prompt "
                               f"has {len(prompt)} tokens" + (f" and max_tokens asks for {limit} more" if limit
                                                               else "") + ". Shorten the prompt or lower max_tokens.",
                               param="max_tokens" if room >= 1 else "messages", code="context_length_exceeded")
            for _ in range(n):
                index = len(self.completions)
                sampling = Sampling(max_tokens=limit or min(DEFAULT_MAX_TOKENS, room), temperature=temperature,
                                    top_p=top_p, seed=None if seed is None else seed + index)
                self.completions.append(Completion(served, prompt, sampling, stops or [], loop))
        try:
            for completion in self.completions:
                served.engine.submit(completion.request)
        except QueueFull:
            self.cancel()
            raise ApiError(429, "The server's queue is full; retry shortly.", code="queue_full",
                           kind="rate_limit_error", headers={"Retry-After": "1"}) from None

    def cancel(self) -> None:
        for completion in self.completions:
            completion.request.cancel()

    @property
    def completion_tokens(self) -> int:
        return sum(c.tokens for c in self.completions)

    @property
    def first_token_at(self) -> float | None:
        times = [c.first_token_at for c in self.completions if c.first_token_at]
        return min(times) if times else None

    async def whole(self) -> list[tuple[str, str]]:
        """Every completion's full text and finish reason, in order."""
        async def one(completion: Completion) -> tuple[str, str]:
            text, finish = [], "stop"
            async for piece, reason in completion.pieces():
                text.append(piece)
                finish = reason or finish
            return "".join(text), finish
        try:
            return list(await asyncio.gather(*(one(c) for c in self.completions)))
        finally:
            self.cancel()

    async def pieces(self) -> AsyncIterator[Piece]:
        """Pieces of all completions as they come, interleaved."""
        merged: asyncio.Queue[Piece | BaseException | None] = asyncio.Queue()

        async def feed(index: int, completion: Completion) -> None:
            try:
                async for text, reason in completion.pieces():
                    await merged.put(Piece(index, text, reason))
            except BaseException as exc:  # noqa: BLE001 - handed to the reader
                await merged.put(exc)
            finally:
                await merged.put(None)

        tasks = [asyncio.create_task(feed(i, c)) for i, c in enumerate(self.completions)]
        try:
            remaining = len(tasks)
            while remaining:
                item = await merged.get()
                if item is None:
                    remaining -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            self.cancel()
            for task in tasks:
                task.cancel()
