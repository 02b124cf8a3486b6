"""One huge request must not stall the server: a body over the size limit is refused at once (413), a prompt
that cannot fit the context is refused without being tokenized (400), requests beside them are answered in
well under a second, and the server's memory comes back."""

from __future__ import annotations

import json
import threading
import time

import httpx

from tests.serve.conftest import KEY

HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
SMALL = {"model": "base", "messages": [{"role": "user", "content": "What is 2 + 3?"}], "max_tokens": 4}


def resident_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


def beside(url: str, huge: bytes, path: str) -> tuple[httpx.Response, float, float]:
    """Send `huge` and, while it is in flight, a small chat request: (the huge one's answer, seconds it took,
    seconds the small one took)."""
    found: dict = {}

    def send_huge() -> None:
        started = time.perf_counter()
        found["huge"] = httpx.post(url + path, content=huge, headers=HEADERS, timeout=60)
        found["huge_seconds"] = time.perf_counter() - started

    thread = threading.Thread(target=send_huge)
    thread.start()
    time.sleep(0.02)
    started = time.perf_counter()
    small = httpx.post(url + "/v1/chat/completions", json=SMALL, headers=HEADERS, timeout=60)
    small_seconds = time.perf_counter() - started
    thread.join()
    assert small.status_code == 200, small.text
    return found["huge"], found["huge_seconds"], small_seconds


def test_a_50mb_body_is_refused_at_once_and_holds_nobody_up(served):
    url, pid = served["url"], served["process"].pid
    httpx.post(url + "/v1/chat/completions", json=SMALL, headers=HEADERS, timeout=60)  # warm
    before = resident_mib(pid)
    text = "x" * (50 << 20)
    for path, body in (("/v1/chat/completions", {**SMALL, "messages": [{"role": "user", "content": text}]}),
                       ("/v1/completions", {"model": "base", "prompt": text, "max_tokens": 4})):
        response, seconds, small_seconds = beside(url, json.dumps(body).encode(), path)
        assert response.status_code == 413, response.text
        error = response.json()["error"]
        assert error["code"] == "request_too_large" and "--max-request-size" in error["message"]
        assert seconds < 1.0 and small_seconds < 1.0, (seconds, small_seconds)
    assert resident_mib(pid) - before < 100  # nothing of it stayed


def test_a_prompt_that_cannot_fit_is_refused_before_it_is_tokenized(served):
    """3 MiB of text, under the size limit: refused from its length alone, long before tokenizing it could end."""
    url = served["url"]
    body = {**SMALL, "messages": [{"role": "user", "content": "the cat sat " * (1 << 18)}]}
    response, seconds, small_seconds = beside(url, json.dumps(body).encode(), "/v1/chat/completions")
    assert response.status_code == 400 and response.json()["error"]["code"] == "context_length_exceeded"
    assert "characters are at least" in response.json()["error"]["message"]
    assert seconds < 1.0 and small_seconds < 1.0, (seconds, small_seconds)


def test_a_long_prompt_that_fits_the_limit_but_not_the_context_is_still_exact(served):
    """Under the character bound, the prompt is tokenized and counted as before."""
    url = served["url"]
    body = {**SMALL, "messages": [{"role": "user", "content": "7 + 8 = 15. " * 400}]}
    response = httpx.post(url + "/v1/chat/completions", json=body, headers=HEADERS, timeout=60)
    assert response.status_code == 400, response.text
    assert "the prompt has" in response.json()["error"]["message"]  # the exact count, after tokenizing
