"""Reward functions: built-in, your own by file or module, a remote service; checked at load, failing clearly."""

from __future__ import annotations

import socket
import time

import pytest

from llmforge.errors import UserError
from llmforge.rl.reward_functions import resolve
from llmforge.rl.scoring import Scorer
from tests.helpers import json_service

USER_REWARDS = '''
def starts_with_one(prompts, completions, answer, **columns):
    return [1.0 if c.strip().startswith("1") else 0.0 for c in completions]

def sometimes_silent(prompts, completions, **columns):
    return [None if i % 2 else 2.0 for i, _ in enumerate(completions)]

def too_few(prompts, completions, **columns):
    return [1.0]

def broken(prompts, completions, **columns):
    raise ValueError("no scores today")

def no_completions(prompts, text):
    return []
'''


@pytest.fixture
def rewards_file(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(USER_REWARDS)
    return path


def test_a_function_from_a_file_receives_prompts_completions_and_columns(rewards_file):
    source = resolve(f"{rewards_file}:starts_with_one")
    assert source.label == "starts_with_one" and source.needs == ("answer",)
    assert source([[]] * 3, ["12", "7", " 1"], {"answer": ["12", "7", "1"]}) == [1.0, 0.0, 1.0]
    with pytest.raises(UserError, match="needs the column.*answer"):
        source([[]], ["1"], {})


def test_a_module_function_and_a_builtin(tmp_path, monkeypatch, rewards_file):
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve("my_rewards:starts_with_one")([[]], ["1"], {"answer": ["1"]}) == [1.0]
    assert resolve("arithmetic")([[]], ["4"], {"answer": ["4"]}) == [1.0]


@pytest.mark.parametrize("name, message", [
    ("no_completions", "must accept the keyword argument `completions`"),
    ("missing", "has no function 'missing'"),
])
def test_a_bad_function_is_refused_when_the_recipe_loads(rewards_file, name, message):
    with pytest.raises(UserError, match=message):
        resolve(f"{rewards_file}:{name}")
    with pytest.raises(UserError, match="does not exist"):
        resolve("nowhere/rewards.py:f")
    with pytest.raises(UserError, match="not built in"):
        resolve("arithmetik")


@pytest.mark.parametrize("name, message", [("too_few", "returned 1 values for 3 completions"),
                                           ("broken", "failed: ValueError: no scores today")])
def test_a_function_failing_at_run_time_is_named(rewards_file, name, message):
    with pytest.raises(UserError, match=rf"'{rewards_file}:{name}' {message}"):
        resolve(f"{rewards_file}:{name}")([[]] * 3, ["a", "b", "c"], {})


def test_none_leaves_a_completion_out_of_that_source(rewards_file):
    scorer = Scorer(sources=[resolve(f"{rewards_file}:sometimes_silent"), resolve("arithmetic")], weights=[1.0, 1.0])
    combined, logged = scorer([[]] * 3, ["4", "4", "5"], {"answer": ["4", "4", "4"]})
    assert combined.tolist() == [3.0, 1.0, 2.0]
    assert logged == {"rewards/sometimes_silent": 2.0, "rewards/arithmetic": pytest.approx(2 / 3)}


@pytest.fixture
def reward_server():
    """A reward service: each completion scores its length; it records what it was sent."""
    with json_service(lambda body: [float(len(c)) for c in body["completions"]]) as served:
        yield served


def test_a_remote_service_scores_the_batch(reward_server):
    url, received = reward_server
    source = resolve(url)
    assert source([[{"role": "user", "content": "hi"}]] * 2, ["ab", "abcd"], {"answer": ["1", "2"]}) == [2.0, 4.0]
    assert received[-1]["answer"] == ["1", "2"] and received[-1]["prompts"][0][0]["content"] == "hi"


def test_an_unreachable_service_is_an_error_not_a_hang():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = resolve(f"http://127.0.0.1:{port}/score", timeout=1.0, retries=1)
    started = time.time()
    with pytest.raises(UserError, match=f"127.0.0.1:{port}/score did not answer after 2 tries"):
        source([[]], ["x"], {})
    assert time.time() - started < 10
