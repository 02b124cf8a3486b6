"""lm-evaluation-harness inside `llmforge eval`: the shipped tasks on a trained model and a LoRA run agree with
llmforge's own exact match, results are kept and reused, and task names are checked before any model loads."""

from __future__ import annotations

import json
import time

import pytest

from llmforge.errors import UserError
from llmforge.eval.benchmarks.build import FILES, render
from llmforge.eval.harness import SHIPPED, HarnessOptions, results_folder, run_tasks
from tests.helpers import run_cli, start_accuracy

SHIPPED_TASKS = ["llmforge_arithmetic", "llmforge_arithmetic_choice", "llmforge_story"]
ONE_PROBLEM = 1 / 200  # the arithmetic task's 200 rows


def test_shipped_task_data_is_what_the_builtin_generators_write():
    for name in FILES:
        assert (SHIPPED / name).read_text() == render(name), f"{name}: run python -m llmforge.eval.benchmarks.build"


@pytest.mark.slow
def test_shipped_tasks_on_a_trained_model_match_its_own_exact_match_and_are_reused(sft_full, tmp_path):
    folder = tmp_path / "evals"
    results = run_tasks(str(sft_full), SHIPPED_TASKS, HarnessOptions(), folder)
    arithmetic = results["llmforge_arithmetic"]
    # the same 200 prompts, chat template and greedy decoding as `llmforge eval --dataset arithmetic-prompts`
    assert arithmetic["chat_template"] and arithmetic["samples"] == 200
    own = start_accuracy(sft_full)
    assert own > 0.1  # a model that answers (0.185 on the 2-core Xeon): agreement is not two zeros
    assert abs(arithmetic["metrics"]["exact_match/first-integer"]["value"] - own) <= ONE_PROBLEM
    assert arithmetic["metrics"]["exact_match/first-integer"]["stderr"] > 0
    choice, story = results["llmforge_arithmetic_choice"], results["llmforge_story"]
    assert not choice["chat_template"] and choice["samples"] == 72 and set(choice["metrics"]) == {"acc", "acc_norm"}
    assert set(story["metrics"]) == {"bleu", "chrf"} and story["examples"][0]["target"]
    saved = json.loads((folder / "tasks" / "llmforge_arithmetic.json").read_text())
    assert saved["made_from"]["model"] == json.loads((sft_full / "run.json").read_text())["final_fingerprint"]

    stamps = {p.name: p.stat().st_mtime_ns for p in (folder / "tasks").iterdir()}
    started = time.time()
    again = run_tasks(str(sft_full), SHIPPED_TASKS, HarnessOptions(), folder)
    assert all(r["reused"] for r in again.values()) and time.time() - started < 5
    assert {p.name: p.stat().st_mtime_ns for p in (folder / "tasks").iterdir()} == stamps
    assert again["llmforge_story"]["metrics"] == story["metrics"]
    fewer = run_tasks(str(sft_full), ["llmforge_story"], HarnessOptions(limit=10), folder)  # new options: measured
    assert not fewer["llmforge_story"]["reused"] and fewer["llmforge_story"]["samples"] == 10


@pytest.mark.slow
def test_a_lora_run_merged_or_attached_scores_as_llmforge_does(sft_lora, tmp_path):
    own = start_accuracy(sft_lora)
    result = run_cli("eval", str(sft_lora), "--tasks", "llmforge_arithmetic", "--out", str(tmp_path / "merged"))
    assert result.returncode == 0, result.stderr[-2000:]
    merged = json.loads(result.stdout.strip().splitlines()[-1])["tasks"]["llmforge_arithmetic"]
    attached = run_tasks(str(sft_lora), ["llmforge_arithmetic"], HarnessOptions(adapter="attached"),
                         tmp_path / "attached")["llmforge_arithmetic"]
    assert own >= 0.05  # the LoRA SFT tests' bound: agreement is not two zeros
    for found in (merged, attached):
        assert abs(found["metrics"]["exact_match/first-integer"]["value"] - own) <= ONE_PROBLEM
    assert "llmforge_arithmetic | exact_match/first-integer" in result.stderr  # the table for people


def test_an_unknown_task_exits_2_naming_close_names_before_loading_a_model(tmp_path):
    result = run_cli("eval", "tiny-llama", "--tasks", "llmforge_arithmetc", "--out", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown task 'llmforge_arithmetc'" in result.stderr and "llmforge_arithmetic" in result.stderr
    assert not (tmp_path / "tasks").exists()
    with pytest.raises(UserError, match="--out"):
        results_folder("tiny-llama", None)  # a preset has no folder of its own to keep results in


def test_a_task_folder_of_your_own_reads_its_data_beside_its_yaml(tmp_path):
    folder = tmp_path / "my-tasks"
    folder.mkdir()
    (folder / "rows.jsonl").write_text("".join(json.dumps({"q": f"{i} + 1 =", "a": str(i + 1)}) + "\n"
                                               for i in range(4)))
    (folder / "mine.yaml").write_text(
        "task: my_sums\ndataset_path: json\ndataset_kwargs: {data_files: {test: rows.jsonl}}\ntest_split: test\n"
        "output_type: generate_until\ndoc_to_text: '{{q}}'\ndoc_to_target: '{{a}}'\n"
        "generation_kwargs: {until: ['\\n'], max_gen_toks: 3, do_sample: false}\n"
        "metric_list: [{metric: exact_match, aggregation: mean, higher_is_better: true}]\n")
    found = run_tasks("tiny-llama", ["my_sums"], HarnessOptions(batch_size=4), tmp_path / "out",
                      [folder])["my_sums"]  # from the test's working directory, not the task folder
    assert found["samples"] == 4 and "exact_match" in found["metrics"]
    with pytest.raises(UserError, match="no such file or folder"):
        run_tasks("tiny-llama", ["my_sums"], HarnessOptions(), tmp_path / "out", [tmp_path / "nope"])
