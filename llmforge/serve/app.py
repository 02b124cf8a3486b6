"""The HTTP server: OpenAI's chat and text completion endpoints, models, health, metrics, the chat page.

Every error is an OpenAI-style body with a 4xx/5xx status; nothing a client sends can stop the server.
Shutdown (SIGTERM, Ctrl-C) is uvicorn's: it stops accepting connections, lets the requests in flight
finish, then the engines stop.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from llmforge.data.chat import encode_prompt
from llmforge.serve.completions import Batch
from llmforge.serve.limits import DEFAULT_MAX_REQUEST_BYTES, read_json, refuse_unless_it_can_fit, tokenized
from llmforge.serve.metrics import ServerMetrics
from llmforge.serve.models import Served
from llmforge.serve.protocol import ApiError, ChatRequest, CompletionRequest, Sampled, Vote

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("llmforge")


def create_app(served: dict[str, Served], api_key: str | None = None, votes: Path | None = None,
               max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> FastAPI:
    engines = {id(s.engine): s.engine for s in served.values()}
    metrics = ServerMetrics(lambda: sum(e.depth for e in engines.values()))
    for engine in engines.values():
        engine.on_batch = metrics.batch_size.observe

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for engine in engines.values():
            engine.close()

    app = FastAPI(title="llmforge", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        metrics.errors.labels(request.url.path, exc.code or exc.status).inc()
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    @app.exception_handler(ValidationError)
    async def invalid(request: Request, exc: RequestValidationError | ValidationError) -> JSONResponse:
        return await api_error(request, validation_error(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return await api_error(request, ApiError(exc.status_code, f"{request.method} {request.url.path}: "
                                                 f"{exc.detail}", code=code))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return await api_error(request, ApiError(500, f"internal error: {type(exc).__name__}: {exc}",
                                                 kind="server_error", code="internal_error"))

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        metrics.requests.labels(request.url.path, response.status_code).inc()
        return response

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        token = given[7:] if given.lower().startswith("bearer ") else ""
        if not secrets.compare_digest(token.encode(), api_key.encode()):
            raise ApiError(401, "Incorrect or missing API key: send `Authorization: Bearer KEY` with the key "
                           "the server was started with (--api-key).", code="invalid_api_key")

    def model_of(body: Sampled) -> Served:
        if body.model not in served:
            raise ApiError(404, f"The model '{body.model}' does not exist; this server has: "
                           f"{', '.join(served)}.", param="model", code="model_not_found")
        return served[body.model]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": list(served)}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/")
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        authorize(request)
        return {"object": "list", "data": [{"id": name, "object": "model", "created": s.created,
                                            "owned_by": "llmforge", "root": s.argument} for name, s in served.items()]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        authorize(request)
        body = ChatRequest.model_validate(await read_json(request, max_request_bytes))
        model = model_of(body)
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                    for m in body.messages]
        refuse_unless_it_can_fit(sum(len(m["content"]) for m in messages), model.loaded.tokenizer, model.context,
                                 "messages")
        prompt = await tokenized(encode_prompt, model.loaded.tokenizer, messages)
        return await respond(request, body, model, [prompt], chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        authorize(request)
        body = CompletionRequest.model_validate(await read_json(request, max_request_bytes))
        model = model_of(body)
        tokenizer = model.loaded.tokenizer
        for text in body.prompt:
            refuse_unless_it_can_fit(len(text), tokenizer, model.context, "prompt")
        prompts = [await tokenized(lambda p: tokenizer(p, add_special_tokens=False)["input_ids"]
                                   or [tokenizer.bos_token_id or 0], p) for p in body.prompt]
        return await respond(request, body, model, prompts, chat=False)

    async def respond(request: Request, body: Sampled, model: Served, prompts: list[list[int]], chat: bool) -> Any:
        batch = Batch(model, prompts, body.n, body.limit, body.temperature, body.top_p, body.seed, body.stop)
        metrics.prompt_tokens.labels(model.name).inc(batch.prompt_tokens)
        ids = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        head = {"id": ids, "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
                "model": model.name}
        endpoint = request.url.path
        if body.stream:
            usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(stream(batch, head, chat, usage, endpoint, model.name),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        results = await batch.whole()
        done(batch, endpoint, model.name)
        if chat:
            choices = [{"index": i, "message": {"role": "assistant", "content": text}, "logprobs": None,
                        "finish_reason": finish} for i, (text, finish) in enumerate(results)]
        else:
            choices = [{"index": i, "text": text, "logprobs": None, "finish_reason": finish}
                       for i, (text, finish) in enumerate(results)]
        return {**head, "choices": choices, "usage": usage_of(batch)}

    def done(batch: Batch, endpoint: str, name: str) -> None:
        metrics.generated_tokens.labels(name).inc(batch.completion_tokens)
        metrics.latency.labels(endpoint).observe(time.perf_counter() - batch.started)
        if batch.first_token_at:
            metrics.first_token.labels(endpoint).observe(batch.first_token_at - batch.started)

    async def stream(batch: Batch, head: dict[str, Any], chat: bool, usage: bool, endpoint: str,
                     name: str) -> AsyncIterator[str]:
        head = {**head, "object": "chat.completion.chunk" if chat else "text_completion"}
        started: set[int] = set()
        try:
            async for piece in batch.pieces():
                if chat:
                    delta: dict[str, Any] = {} if piece.index in started else {"role": "assistant"}
                    started.add(piece.index)
                    if piece.text:
                        delta["content"] = piece.text
                    choice = {"index": piece.index, "delta": delta, "logprobs": None,
                              "finish_reason": piece.finish_reason}
                else:
                    choice = {"index": piece.index, "text": piece.text, "logprobs": None,
                              "finish_reason": piece.finish_reason}
                if piece.text or piece.finish_reason or chat:
                    yield sse({**head, "choices": [choice]})
            if usage:
                yield sse({**head, "choices": [], "usage": usage_of(batch)})
            done(batch, endpoint, name)
        except ApiError as exc:  # headers are gone: the error travels as an event, as OpenAI's does
            metrics.errors.labels(endpoint, exc.code or exc.status).inc()
            yield sse(exc.body())
        yield "data: [DONE]\n\n"

    @app.post("/votes")
    async def vote(request: Request) -> dict[str, Any]:
        authorize(request)
        body = Vote.model_validate(await read_json(request, max_request_bytes))
        if votes is None:
            raise ApiError(400, "this server keeps no votes (start it with --votes FILE)", code="votes_off")
        prompt = [{"role": m.role, "content": m.text()} for m in body.messages]
        row = {"prompt": prompt,
               "chosen": [{"role": "assistant", "content": body.answers[body.winner]}],
               "rejected": [{"role": "assistant", "content": body.answers[1 - body.winner]}],
               "chosen_model": body.models[body.winner], "rejected_model": body.models[1 - body.winner],
               "time": time.time()}
        votes.parent.mkdir(parents=True, exist_ok=True)
        with votes.open("a", encoding="utf-8") as f:  # one line per write: a reader never sees half a vote
            f.write(json.dumps(row) + "\n")
        return {"saved": True, "file": str(votes)}

    return app


def validation_error(exc: Any) -> ApiError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    message = first.get("msg", "invalid value")
    if first.get("type") == "extra_forbidden":
        message = "unrecognized request argument"
    return ApiError(400, f"{where}: {message}" if where else message, param=where or None,
                    code="invalid_value" if first.get("type") != "missing" else "missing_required_parameter")


def usage_of(batch: Batch) -> dict[str, int]:
    completion = batch.completion_tokens
    return {"prompt_tokens": batch.prompt_tokens, "completion_tokens": completion,
            "total_tokens": batch.prompt_tokens + completion}


def sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"
