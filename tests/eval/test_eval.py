"""`llmforge eval`: the loss it reports is the model's own, and bad input is a user error."""

from __future__ import annotations

import json
import math

import pytest
import torch

from llmforge.config.schema import DataSource, ModelConfig
from llmforge.data.chat import encode_text
from llmforge.data.formats import graded_prompts
from llmforge.data.sources import load_source
from llmforge.errors import UserError
from llmforge.eval import _mean_loss, evaluate
from llmforge.eval.exact_match import exact_match
from llmforge.inference import load_for_inference
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


def test_cli_reports_json_and_exit_2_on_missing_file(tmp_path, sft_short):
    """The CLI's accuracy is the model's greedy exact match on those rows (a trained model, so it is not 0)."""
    ok = run_cli("eval", str(sft_short), "--dataset", "arithmetic-prompts", "--split", "test", "--max-samples", "40",
                 threads=2)
    assert ok.returncode == 0, ok.stderr[-2000:]
    reported = json.loads(ok.stdout)
    rows = load_source(DataSource(name="arithmetic-prompts", split="test", max_samples=40))
    items = graded_prompts(rows.rows, rows.label)
    assert reported == {"eval_accuracy": exact_match(load_for_inference(str(sft_short)), items)["accuracy"],
                        "samples": 40}
    bad = run_cli("eval", "tiny-gpt2", "--path", str(tmp_path / "missing.jsonl"))
    assert bad.returncode == 2 and "file not found" in bad.stderr and "Traceback" not in bad.stderr
