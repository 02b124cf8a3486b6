"""pass@k: Chen et al.'s unbiased estimate against values worked by hand, and the CLI on a trained model."""

from __future__ import annotations

import json

import pytest

from llmforge.eval.pass_at_k import pass_at_k
from tests.helpers import run_cli


@pytest.mark.parametrize(("n", "correct", "k", "expected"), [
    (4, 1, 1, 0.25),              # one right of four: a single draw finds it a quarter of the time
    (4, 1, 2, 1 - 3 / 6),         # 1 - C(3,2)/C(4,2)
    (16, 4, 4, 1 - 495 / 1820),   # 1 - C(12,4)/C(16,4)
    (5, 0, 3, 0.0),               # never right
    (5, 3, 3, 1.0),               # only two wrong: any three draws hold a right one
])
def test_pass_at_k_matches_hand_computed_values(n, correct, k, expected):
    assert pass_at_k(n, correct, k) == pytest.approx(expected)


def test_pass_at_k_refuses_impossible_counts():
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_cli_pass_at_k_rises_with_k_and_keeps_greedy_accuracy(sft_short):
    """On a trained model pass@k cannot fall as k grows, and the greedy figure beside it is `llmforge eval`'s own
    exact match on the same rows; a bad --pass-at or a non-prompt dataset is exit 2."""
    args = ("eval", str(sft_short), "--dataset", "arithmetic-prompts", "--max-samples", "24")
    sampled = run_cli(*args, "--pass-at", "1,4,8", threads=2)
    assert sampled.returncode == 0, sampled.stderr[-2000:]
    found = json.loads(sampled.stdout)
    greedy = json.loads(run_cli(*args, threads=2).stdout)["eval_accuracy"]
    assert found["greedy_accuracy"] == greedy and found["samples_per_prompt"] == 8 and found["prompts"] == 24
    assert 0 < found["pass@1"] <= found["pass@4"] <= found["pass@8"] <= 1
    assert found["pass@8"] > found["pass@1"]  # sampled answers differ: there is room to sharpen
    bad = run_cli("eval", str(sft_short), "--dataset", "arithmetic-prompts", "--pass-at", "0")
    assert bad.returncode == 2 and "--pass-at" in bad.stderr and "Traceback" not in bad.stderr
    text = run_cli("eval", str(sft_short), "--dataset", "tinytext", "--max-samples", "4", "--pass-at", "2")
    assert text.returncode == 2 and "prompt rows" in text.stderr and "Traceback" not in text.stderr
