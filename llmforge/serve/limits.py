"""What one request may cost the server before it is answered: its body's size, and its prompt's length.

A body over `--max-request-size` (default 8 MiB) is refused with 413 from its Content-Length, or as soon as
its streamed bytes pass the limit, before it is held whole. A prompt is refused as too long for the
context without being tokenized when its characters alone prove it: no token stands for more characters
than the longest entry in the tokenizer's vocabulary, so a prompt of C characters has at least C / longest
tokens. What is tokenized is tokenized on a worker thread, one prompt at a time, so the requests being
generated for are not held up while it runs.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

from starlette.requests import Request

from llmforge.serve.protocol import ApiError

DEFAULT_MAX_REQUEST_BYTES = 8 << 20
TOKENIZING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmforge-tokenize")


async def read_json(request: Request, limit: int) -> Any:
    """The request's JSON object, or a 413 / 400 ApiError with an OpenAI-style body."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(size, limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        body = json.loads(raw) if len(raw) < 1 << 16 else await asyncio.to_thread(json.loads, raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"The request body is not valid JSON ({exc}).", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    return body


def too_large(size: int, limit: int) -> ApiError:
    return ApiError(413, f"The request body is {'over ' if size > limit else ''}{size:,} bytes; this server takes "
                    f"at most {limit:,} (llmforge serve --max-request-size).", code="request_too_large")


@lru_cache(maxsize=16)
def longest_token(tokenizer: Any) -> int:
    """Characters of the longest vocabulary entry (byte-level entries write one character per byte, so a
    token never decodes to more characters than this)."""
    return max((len(token) for token in tokenizer.get_vocab()), default=1)


def refuse_unless_it_can_fit(characters: int, tokenizer: Any, context: int, param: str) -> None:
    """A 400 without tokenizing, when `characters` of text cannot fit in `context` tokens whatever they are."""
    fewest = characters // longest_token(tokenizer)
    if fewest > context:
        raise ApiError(400, f"This model's maximum context length is {context} tokens; the prompt's {characters:,} "
                       f"characters are at least {fewest:,} tokens. Shorten the prompt.", param=param,
                       code="context_length_exceeded")


async def tokenized(fn: Any, *args: Any) -> Any:
    """`fn(*args)` on the tokenizing thread (one tokenizer call at a time: a fast tokenizer is not to be shared
    by threads), leaving the event loop free."""
    return await asyncio.get_running_loop().run_in_executor(TOKENIZING, fn, *args)
