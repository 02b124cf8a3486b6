"""A pipeline's evaluation of an aligned stage: both models on the same held-out prompts, KL to the start."""

from __future__ import annotations

from llmforge.config import load_config
from llmforge.data.formats import graded_prompts
from llmforge.data.sources import load_source
from llmforge.eval.divergence import sampled_kl
from llmforge.eval.exact_match import exact_match
from llmforge.inference import load_for_inference
from llmforge.pipeline.evaluation import evaluate_cached
from llmforge.pipeline.spec import PipelineEvaluation, PipelineStage
from tests.helpers import DIGITS, write_recipe

HELD_OUT = {"name": "arithmetic-prompts", "split": "test", "options": {**DIGITS, "num_samples": 200}}


def stage(folder, name, kind, output_dir, start):
    """A stage whose output is an existing run (the session's SFT models stand in for trained stages)."""
    recipe = write_recipe(folder, name=f"{name}.yaml", base={
        "stage": kind, "model": {"name": str(start)}, "output_dir": str(output_dir),
        "data": {"train": [{"name": "arithmetic-pref", "options": DIGITS}], "eval": [HELD_OUT]}})
    return PipelineStage(name=name, config=load_config(recipe), needs=[])


def test_an_aligned_stage_is_compared_with_its_start_on_the_same_prompts(pretrained, sft_full, tmp_path):
    # the pretrained model stands in for the start: it answers none of the problems (it tells stories)
    start = stage(tmp_path, "sft", "sft", pretrained, pretrained)
    aligned = stage(tmp_path, "dpo", "dpo", sft_full, pretrained)
    result = evaluate_cached(aligned, start, None, PipelineEvaluation(), tmp_path / "evals")
    items = graded_prompts(load_source(aligned.config.data.eval[0]).rows, "held-out")
    against = result["against"]
    assert against["stage"] == "sft" and against["prompts"] == 200 and "win_rate" not in against
    assert against["accuracy"] == exact_match(load_for_inference(str(sft_full)), items)["accuracy"]
    assert against["baseline_accuracy"] == exact_match(load_for_inference(str(pretrained)), items)["accuracy"] == 0
    assert against["accuracy"] > against["baseline_accuracy"]  # the SFT model is the better one
    assert against["kl"] > 0.1
    assert result["samples"][0]["expected"] == items[0]["answer"]

    saved = tmp_path / "evals" / "dpo.json"
    kept = saved.stat().st_mtime_ns
    assert evaluate_cached(aligned, start, None, PipelineEvaluation(), tmp_path / "evals") == result
    assert saved.stat().st_mtime_ns == kept  # reused, not measured again


def test_sampled_kl_of_a_model_to_itself_is_zero_and_repeatable(sft_full, sft_short):
    prompts = [[{"role": "user", "content": f"What is {a} + 2?"}] for a in range(8)]
    full, short = load_for_inference(str(sft_full)), load_for_inference(str(sft_short))
    assert sampled_kl(full, load_for_inference(str(sft_full)), prompts) == 0.0
    first = sampled_kl(short, full, prompts)  # an estimate from 8 samples: nonzero, not necessarily positive
    assert first != 0 and sampled_kl(short, full, prompts) == first
