"""`llmforge bench --only serve`: a real `llmforge serve` on 127.0.0.1 under 1, 4 and 16 concurrent clients,
and the same requests one at a time through `llmforge generate`'s path, in the same run.

Each client sends its requests one after another (a closed loop, as a chat user or an agent does), streamed,
so time to first token is measured as a client sees it. Every request asks for the same number of tokens
(sampled at temperature 1 with its own seed), so the server and the one-at-a-time path generate the same work.
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from llmforge.serve.server import launch

log = logging.getLogger("llmforge")
CLIENTS = (1, 4, 16)
NEW_TOKENS = 64


def _prompt(i: int) -> str:
    return f"Tell me story number {i}."


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


async def _load(url: str, clients: int, requests: int) -> dict[str, Any]:
    import httpx

    latencies, first_tokens, tokens, errors = [], [], 0, 0

    async def client(index: int, http: httpx.AsyncClient) -> None:
        nonlocal tokens, errors
        for k in range(index, requests, clients):
            body = {"model": "model", "prompt": _prompt(k), "max_tokens": NEW_TOKENS, "temperature": 1.0,
                    "seed": k, "stream": True, "stream_options": {"include_usage": True}}
            start, first = time.perf_counter(), None
            try:
                async with http.stream("POST", url + "/v1/completions", json=body) as response:
                    if response.status_code != 200:
                        errors += 1
                        continue
                    async for line in response.aiter_lines():
                        if not line.startswith("data: ") or line == "data: [DONE]":
                            continue
                        chunk = json.loads(line[6:])
                        if "error" in chunk:
                            errors += 1
                        if chunk.get("choices") and first is None:
                            first = time.perf_counter()
                        if chunk.get("usage"):
                            tokens += chunk["usage"]["completion_tokens"]
            except httpx.HTTPError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - start)
            first_tokens.append((first or time.perf_counter()) - start)

    async with httpx.AsyncClient(timeout=600) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        seconds = time.perf_counter() - started
    return {"requests": requests, "errors": errors, "seconds": seconds, "requests_per_second": requests / seconds,
            "tokens_per_second": tokens / seconds, "latency_p50": statistics.median(latencies),
            "latency_p95": _percentile(latencies, 0.95), "ttft_p50": statistics.median(first_tokens),
            "ttft_p95": _percentile(first_tokens, 0.95)}


def one_at_a_time(model: Path, requests: int) -> dict[str, Any]:
    """The same prompts through `llmforge generate`'s path (one `generate` call per request), in this process."""
    from llmforge.inference import load_for_inference
    from llmforge.inference.generation import encode, generate_ids

    loaded = load_for_inference(str(model))
    loaded.model.generation_config.min_new_tokens = NEW_TOKENS  # the same work as the server's requests
    latencies, tokens = [], 0
    started = time.perf_counter()
    for k in range(requests):
        torch.manual_seed(k)
        begin = time.perf_counter()
        out = generate_ids(loaded, [encode(loaded, _prompt(k), chat=False)], max_new_tokens=NEW_TOKENS,
                           temperature=1.0)
        latencies.append(time.perf_counter() - begin)
        tokens += len(out[0])
    seconds = time.perf_counter() - started
    return {"requests": requests, "errors": 0, "seconds": seconds, "requests_per_second": requests / seconds,
            "tokens_per_second": tokens / seconds, "latency_p50": statistics.median(latencies),
            "latency_p95": _percentile(latencies, 0.95)}


def serve_rows(model: Path, requests: int = 32) -> list[dict[str, Any]]:
    rows = []
    url, process = launch([f"model={model}", "--votes", ""])
    try:
        asyncio.run(_load(url, 1, 2))  # warm-up: first-call kernel selection
        for clients in CLIENTS:
            log.info("bench: serve, %d concurrent client(s)", clients)
            count = requests if clients > 1 else requests // 2
            rows.append({"name": f"llmforge serve, {clients} concurrent client{'s' if clients > 1 else ''}",
                         "group": "serve", "clients": clients, "new_tokens": NEW_TOKENS,
                         **asyncio.run(_load(url, clients, count))})
    finally:
        process.terminate()
        process.wait(60)
    log.info("bench: serve, one at a time through generate")
    rows.append({"name": "one at a time (llmforge generate's path)", "group": "serve", "clients": 1,
                 "new_tokens": NEW_TOKENS,
                 **one_at_a_time(model, requests // 2)})
    return rows
