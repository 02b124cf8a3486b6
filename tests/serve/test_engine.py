"""The batching engine and the text stream, in-process: sampling math by hand, batched greedy decoding equal to
one-at-a-time `generate`, rows leaving a batch, stop strings never leaking."""

from __future__ import annotations

import threading

import pytest
import torch

from llmforge.config.schema import ModelConfig
from llmforge.inference.generation import generate_ids
from llmforge.inference.loading import stops_of
from llmforge.registry import load_model
from llmforge.serve.engine import BatchingEngine, QueueFull, Request, Sampling, sample
from llmforge.serve.text import TextStream


def test_top_p_keeps_the_smallest_prefix_reaching_the_mass():
    # probabilities 0.5, 0.3, 0.15, 0.05: top_p 0.7 keeps the first two (0.5 < 0.7 <= 0.8)
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    seen = {sample(logits, Sampling(1, temperature=1.0, top_p=0.7), torch.Generator().manual_seed(s))
            for s in range(200)}
    assert seen == {0, 1}
    # top_p below the first token's mass keeps exactly that token
    assert {sample(logits, Sampling(1, temperature=1.0, top_p=0.2), torch.Generator().manual_seed(s))
            for s in range(50)} == {0}
    assert sample(logits, Sampling(1, temperature=0.0), torch.Generator()) == 0


def test_same_seed_same_tokens_and_temperature_spreads():
    logits = torch.zeros(50)
    draw = [sample(logits, Sampling(1, temperature=1.0), torch.Generator().manual_seed(3)) for _ in range(2)]
    assert draw[0] == draw[1]
    generator = torch.Generator().manual_seed(0)
    assert len({sample(logits, Sampling(1, temperature=1.0), generator) for _ in range(100)}) > 20


class Tokens:
    """A tokenizer stand-in over characters: ids are code points."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)


def feed(stream: TextStream, text: str) -> list[str]:
    return [stream.push(ord(c)) for c in text]


def test_stop_string_is_held_back_and_never_sent():
    stream = TextStream(Tokens(), ["\n\nQ:"])
    pieces = feed(stream, "12\n\nQ: more")
    assert stream.stopped and "".join(pieces) == "12"
    # a false start is released once it cannot be a stop string any more
    stream = TextStream(Tokens(), ["END"])
    pieces = feed(stream, "wEN")
    assert "".join(pieces) == "w"
    assert stream.push(ord("x")) == "ENx" and not stream.stopped
    assert stream.finish() == ""
    stream = TextStream(Tokens(), ["END"])
    feed(stream, "abE")
    assert stream.finish() == "E"  # generation ended: what was held back is sent


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    loaded = load_model(ModelConfig(name="tiny-llama"))
    loaded.model.eval()
    return loaded


def test_batched_greedy_equals_one_at_a_time(tiny):
    """Prompts of different lengths decoded together (left-padded, rows leaving as they stop) give the tokens
    each gives alone through `generate`."""
    tokenizer = tiny.tokenizer
    prompts = [tokenizer(t, add_special_tokens=False)["input_ids"]
               for t in ("Once upon a time", "The cat", "A very long prompt about a dog and a cat and a bird", "Hi")]
    sizes: list[int] = []
    engine = BatchingEngine(tiny.model, stops_of(tiny), tokenizer.pad_token_id, max_batch_size=8,
                            on_batch=sizes.append, start=False)
    try:
        lengths = [3, 12, 7, 1]
        done = [threading.Event() for _ in prompts]
        outs: list[list[int]] = [[] for _ in prompts]
        requests = [Request(p, Sampling(n, temperature=0.0),
                            lambda t, i=i: done[i].set() if t is None else outs[i].append(t))
                    for i, (p, n) in enumerate(zip(prompts, lengths, strict=True))]
        for request in requests:  # all waiting before the engine starts: one batch
            engine.submit(request)
        engine.start()
        for event in done:
            assert event.wait(60)
        results = outs
    finally:
        engine.close()
    assert sizes == [4]
    for prompt, n, got, request in zip(prompts, lengths, results, requests, strict=True):
        alone = generate_ids(tiny, [prompt], max_new_tokens=n)[0]
        assert got == alone[:len(got)]
        assert len(got) == n or request.finish_reason == "stop"


def test_cancelled_rows_leave_and_full_queue_refuses(tiny):
    engine = BatchingEngine(tiny.model, [], tiny.tokenizer.pad_token_id, max_batch_size=4, max_queue=2)
    try:
        tokens: list[int] = []
        finished = threading.Event()
        request = Request([5, 6, 7], Sampling(10_000, temperature=1.0, seed=1),
                          lambda t: finished.set() if t is None else tokens.append(t))
        engine.submit(request)
        while len(tokens) < 3:
            threading.Event().wait(0.01)
        request.cancel()
        assert finished.wait(10)
        assert request.finish_reason == "cancelled" and len(tokens) < 10_000
        blocker = Request([5], Sampling(5000, temperature=1.0), lambda t: None)
        engine.submit(blocker)
        while engine.waiting.qsize() or engine.running == 0:  # the blocker is being decoded
            threading.Event().wait(0.01)
        engine.submit(Request([5], Sampling(1), lambda t: None))
        engine.submit(Request([5], Sampling(1), lambda t: None))
        with pytest.raises(QueueFull):
            engine.submit(Request([5], Sampling(1), lambda t: None))
        blocker.cancel()
    finally:
        engine.close()
