"""`llmforge eval`: the loss it reports is the model's own, and bad input is a user error."""

from __future__ import annotations

import json
import math

import pytest
import torch

from llmforge.config.schema import DataSource, ModelConfig
from llmforge.data.chat import encode_text
from llmforge.errors import UserError
from llmforge.eval import _mean_loss, evaluate
from llmforge.registry import load_model
from tests.helpers import run_cli


def test_mean_loss_matches_the_models_own_loss():
    torch.manual_seed(0)
    loaded = load_model(ModelConfig(name="tiny-llama"))
    encoded = encode_text(loaded.tokenizer, "Tom went to the park. Anna was happy.")
    ids = torch.tensor([encoded.input_ids])
    with torch.no_grad():
        expected = loaded.model(input_ids=ids, labels=ids).loss.item()
    got = _mean_loss(loaded.model, [(encoded.input_ids, encoded.labels)], loaded.tokenizer.pad_token_id, 4)
    assert got == pytest.approx(expected, rel=1e-5)


def test_random_init_scores_near_uniform():
    metrics = evaluate("tiny-llama", DataSource(name="tinytext", split="test", max_samples=20))
    assert abs(metrics["eval_loss"] - math.log(768)) < 1.0 and metrics["samples"] == 20


def test_prompt_rows_need_answers(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "What is 1 + 1?"}) + "\n")
    with pytest.raises(UserError, match="need an 'answer'"):
        evaluate("tiny-llama", DataSource(path=str(path), format="prompt"))


def test_cli_reports_json_and_exit_2_on_missing_file(tmp_path):
    ok = run_cli("eval", "tiny-gpt2", "--dataset", "arithmetic-prompts", "--max-samples", "4")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert 0.0 <= json.loads(ok.stdout)["eval_accuracy"] <= 1.0
    bad = run_cli("eval", "tiny-gpt2", "--path", str(tmp_path / "missing.jsonl"))
    assert bad.returncode == 2 and "file not found" in bad.stderr and "Traceback" not in bad.stderr
