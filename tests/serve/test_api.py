"""The OpenAI-compatible API through the real `openai` client against a real `llmforge serve` on 127.0.0.1:
answers equal to `llmforge generate`'s, streaming, both models from one base, every bad input with its status
and an OpenAI-style body, concurrency, a client that disconnects, and SIGTERM with requests in flight."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import threading
import time

import httpx
import openai
import pytest

from llmforge.inference import generate, load_for_inference
from tests.serve.conftest import KEY, server

QUESTION = [{"role": "user", "content": "What is 3 + 4?"}]


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=served["url"] + "/v1", api_key=KEY, max_retries=0, timeout=120)


def metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(url + "/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{re.escape(name)}(\{{{re.escape(want)}\}})? (\S+)$" if want else rf"^{re.escape(name)} (\S+)$"
    for line in text.splitlines():
        found = re.match(pattern, line)
        if found:
            return float(found.groups()[-1])
    return 0.0


def test_models_lists_both_names(client):
    assert sorted(m.id for m in client.models.list().data) == ["base", "lora"]


def test_greedy_answers_equal_generate_for_base_and_adapter(client, served):
    """The base and its LoRA adapter, served from one copy of the base, answer as each alone does through
    `llmforge generate` (the adapter merged on load there)."""
    answers = {}
    for name, folder in (("base", served["run"] / "base"), ("lora", served["run"])):
        reply = client.chat.completions.create(model=name, messages=QUESTION, max_tokens=8, temperature=0)
        expected = generate(load_for_inference(str(folder)), [QUESTION[0]["content"]], max_new_tokens=8)[0]
        assert reply.choices[0].message.content == expected
        assert reply.usage.completion_tokens <= 8 and reply.usage.prompt_tokens > 5
        assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
        answers[name] = expected
    assert answers["base"] != answers["lora"]


def test_streamed_pieces_join_to_the_whole_answer(client):
    whole = client.chat.completions.create(model="lora", messages=QUESTION, max_tokens=12, temperature=0)
    chunks = list(client.chat.completions.create(model="lora", messages=QUESTION, max_tokens=12, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_completions_n_seed_and_stop(client):
    first = client.completions.create(model="base", prompt="Once upon a time", max_tokens=10, n=3,
                                      temperature=1.0, seed=5)
    again = client.completions.create(model="base", prompt="Once upon a time", max_tokens=10, n=3,
                                      temperature=1.0, seed=5)
    texts = [c.text for c in first.choices]
    assert texts == [c.text for c in again.choices]
    assert len(set(texts)) > 1  # each choice its own seed
    assert 3 <= first.usage.completion_tokens <= 30
    # a stop string cuts the text before it and ends that completion
    text = texts[0]
    assert len(text) >= 4
    stop = text[2:4]
    cut = client.completions.create(model="base", prompt="Once upon a time", max_tokens=10, temperature=1.0,
                                    seed=5, stop=[stop])
    assert cut.choices[0].text == text[:text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def post(url: str, path: str, body, key: str | None = KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(url + path, content=content, headers={**headers, "Content-Type": "application/json"},
                      timeout=60)


@pytest.mark.parametrize("body, status, code, words", [
    (b"{not json", 400, "invalid_json", "not valid JSON"),
    ({"model": "base", "messages": QUESTION, "temperature": "hot"}, 400, "invalid_value", "temperature"),
    ({"model": "base", "messages": QUESTION, "colour": "blue"}, 400, "invalid_value", "colour"),
    ({"model": "base"}, 400, "missing_required_parameter", "messages"),
    ({"model": "nope", "messages": QUESTION}, 404, "model_not_found", "base, lora"),
    ({"model": "base", "messages": [{"role": "user", "content": "word " * 1200}]}, 400,
     "context_length_exceeded", "maximum context length is 1024"),
    ({"model": "base", "messages": QUESTION, "max_tokens": 5000}, 400, "context_length_exceeded", "max_tokens"),
])
def test_bad_requests_get_openai_errors(served, body, status, code, words):
    response = post(served["url"], "/v1/chat/completions", body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and words in error["message"] and error["type"]


def test_api_key_is_required(served):
    for key in (None, "sk-wrong"):
        response = post(served["url"], "/v1/chat/completions", {"model": "base", "messages": QUESTION}, key=key)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=served["url"] + "/v1", api_key="sk-wrong", max_retries=0).models.list()
    assert httpx.get(served["url"] + "/nowhere").json()["error"]["code"] == "not_found"


def test_thirty_two_concurrent_requests_all_answered(served):
    async def main():
        client = openai.AsyncOpenAI(base_url=served["url"] + "/v1", api_key=KEY, max_retries=0, timeout=120)
        calls = [client.chat.completions.create(model=("base", "lora")[i % 2], max_tokens=16, temperature=0,
                                                messages=[{"role": "user", "content": f"What is {i} + 1?"}])
                 for i in range(32)]
        return await asyncio.gather(*calls)

    batches_before = metric(served["url"], "llmforge_batch_size_count")
    replies = asyncio.run(main())
    assert len(replies) == 32 and all(r.choices[0].message.content is not None for r in replies)
    batches = metric(served["url"], "llmforge_batch_size_count") - batches_before
    assert batches < 32  # requests were decoded together, not one by one


def test_full_queue_answers_429_with_retry_after(served):
    async def main():
        async with httpx.AsyncClient(timeout=120) as http:
            body = {"model": "base", "prompt": "Once", "max_tokens": 300, "n": 16, "temperature": 1.0}
            calls = [http.post(served["url"] + "/v1/completions", json=body,
                               headers={"Authorization": f"Bearer {KEY}"}) for _ in range(4)]
            return await asyncio.gather(*calls)

    responses = asyncio.run(main())
    refused = [r for r in responses if r.status_code == 429]
    assert refused and all(r.status_code in (200, 429) for r in responses)
    assert refused[0].headers["retry-after"] == "1" and refused[0].json()["error"]["code"] == "queue_full"
    assert httpx.get(served["url"] + "/health").json()["status"] == "ok"


def test_disconnect_mid_stream_frees_the_slot(served, client):
    before = metric(served["url"], "llmforge_generated_tokens_total", model="lora")
    with httpx.stream("POST", served["url"] + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                      json={"model": "lora", "messages": QUESTION, "max_tokens": 900, "temperature": 1.0,
                            "stream": True}, timeout=60) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
    deadline = time.time() + 20
    while metric(served["url"], "llmforge_queue_depth") > 0 and time.time() < deadline:
        time.sleep(0.05)
    assert metric(served["url"], "llmforge_queue_depth") == 0
    time.sleep(0.5)
    generated = metric(served["url"], "llmforge_generated_tokens_total", model="lora") - before
    assert generated < 450  # far fewer than the 900 asked for: the row left the batch


def test_metrics_and_health(served):
    text = httpx.get(served["url"] + "/metrics").text
    for name in ("llmforge_requests_total", "llmforge_request_errors_total", "llmforge_generated_tokens_total",
                 "llmforge_queue_depth", "llmforge_request_latency_seconds_bucket",
                 "llmforge_time_to_first_token_seconds_bucket"):
        assert name in text
    assert httpx.get(served["url"] + "/health").json() == {"status": "ok", "models": ["base", "lora"]}


def test_sigterm_answers_every_request_in_flight(lora_run):
    with server(f"base={lora_run / 'base'}") as (url, process):
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)
        results: list = []

        def ask(i: int) -> None:
            try:
                reply = client.completions.create(model="base", prompt=f"Story {i}", max_tokens=200,
                                                  temperature=1.0, seed=i)
                results.append(reply.choices[0].finish_reason)
            except Exception as exc:  # noqa: BLE001 - recorded and asserted below
                results.append(exc)

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.time() + 30
        while metric(url, "llmforge_queue_depth") < 4 and time.time() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(120)
        # uvicorn finishes the requests, then ends the process by the signal it caught
        assert process.wait(60) in (0, -signal.SIGTERM)
    assert results == ["length"] * 4


def test_user_errors_at_start_exit_2(served, tmp_path):
    from tests.helpers import run_cli

    missing = run_cli("serve", str(tmp_path / "no-such-run"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    port = served["url"].rsplit(":", 1)[1]
    taken = run_cli("serve", f"base={served['run'] / 'base'}", "--port", port)
    assert taken.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in taken.stderr
    twice = run_cli("serve", f"a={served['run'] / 'base'}", f"a={served['run']}")
    assert twice.returncode == 2 and "two models are served as 'a'" in twice.stderr
