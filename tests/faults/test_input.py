"""Fault harness, bad input: every mistake below exits 2 with a message that names where to fix it.

Run in-process through the CLI's own entry point (what `llmforge` runs), so each case costs milliseconds
to a few seconds.
"""

from __future__ import annotations

import json
import math

import pytest

from llmforge.cli import main
from tests.faults.harness import fails, jsonl
from tests.helpers import TINY_PRETRAIN, write_recipe

SFT = {"stage": "sft", "model": {"name": "tiny-llama"}, "train": {"max_steps": 2, "micro_batch_size": 2},
       "checkpoint": {"every_steps": 100}, "logging": {"every_steps": 1}, "eval": {"every_steps": None}}


@pytest.mark.parametrize("override, needs", [("train.optimizer=adamw_8bit", "bitsandbytes"),
                                             ("model.attn_implementation=flash_attention_2", "flash-attn"),
                                             ("adapter.type=qlora", "CUDA GPU")])
def test_what_this_machine_cannot_run_is_refused_before_loading(tmp_path, capsys, override, needs):
    pytest.importorskip("torch").cuda.is_available() and pytest.skip("a GPU machine may run these")
    recipe = write_recipe(tmp_path, base=SFT, data={"train": [{"name": "arithmetic-sft"}]})
    err = fails(capsys, "train", str(recipe), override)
    assert override.split("=")[0] in err and needs in err


def test_a_bad_row_is_named_by_its_line_in_the_file(tmp_path, capsys):
    """Valid rows whose answers are strings like "1" around a broken one: the message names line 3 of the
    file (datasets' pandas fallback used to turn "1" into 1 and name row 0)."""
    data = jsonl(tmp_path / "chat.jsonl", [
        {"messages": [{"role": "user", "content": "1 + 0?"}, {"role": "assistant", "content": "1"}]},
        "",
        {"messages": [{"role": "user", "content": "2 + 0?"}, {"role": "assistant", "content": "2"}]},
        {"messages": [{"role": "robot", "content": "3 + 0?"}, {"role": "assistant", "content": "3"}]},
    ])
    recipe = write_recipe(tmp_path, base=SFT, data={"train": [{"path": data}], "max_length": 32})
    err = fails(capsys, "train", str(recipe))
    assert "line 4 of chat.jsonl" in err and "'robot'" in err


def test_a_field_whose_type_changes_is_named(tmp_path, capsys):
    data = jsonl(tmp_path / "prompts.jsonl", [{"prompt": "1 + 1?", "answer": "2"}, {"prompt": "2 + 2?", "answer": 4}])
    online = {key: value for key, value in SFT.items() if key != "eval"}  # grpo has no evaluation loop
    recipe = write_recipe(tmp_path, base={**online, "stage": "grpo"}, data={"train": [{"path": data}]},
                          grpo={"reward_functions": ["arithmetic"], "num_generations": 2})
    err = fails(capsys, "train", str(recipe))
    assert "line 2" in err and "'answer' is a number" in err and "string" in err


@pytest.mark.parametrize("name, text, where", [
    ("broken.jsonl", '{"text": "a"}\n{"text": "b"} x\n', "line 2, column 15"),
    ("broken.json", '[{"text": "a"},\n {"text": "b"}}\n', "line 2, column 15"),
])
def test_invalid_json_names_its_line_and_column(tmp_path, capsys, name, text, where):
    (tmp_path / name).write_text(text)
    recipe = write_recipe(tmp_path, data={"train": [{"path": str(tmp_path / name)}], "eval": [], "max_length": 64})
    err = fails(capsys, "train", str(recipe))
    assert f"{name}, {where}: invalid JSON" in err


def test_rows_without_text_are_counted_not_dropped_silently(tmp_path, capsys, caplog):
    rows = [{"text": f"Tom went to the park number {i}."} for i in range(40)]
    rows[3]["text"], rows[7]["text"] = None, ""
    (tmp_path / "corpus.csv").write_text("id,text\n" + "".join(f"{i},{r['text'] or ''}\n" for i, r in enumerate(rows))
                                         + "40,\n")  # empty cells: pandas reads NaN
    data = jsonl(tmp_path / "corpus.jsonl", [*rows, {"text": math.nan}])
    for source in (data, str(tmp_path / "corpus.csv")):
        out = tmp_path / f"run-{source[-4:]}"
        recipe = write_recipe(tmp_path, data={"train": [{"path": source}], "eval": [], "max_length": 32},
                              train={"max_steps": 1}, output_dir=str(out))
        assert main(["train", str(recipe)]) == 0, capsys.readouterr().err[-3000:]
        assert json.loads((out / "run.json").read_text())["data"]["train_empty_rows"] == 3
        assert "3 rows without text" in caplog.text
        caplog.clear()


def test_a_nan_preference_score_is_refused(tmp_path, capsys):
    pair = {"prompt": "1 + 1?", "chosen": "2", "rejected": "3", "score_chosen": 8.0, "score_rejected": 2.0}
    data = jsonl(tmp_path / "pairs.jsonl", [pair, {**pair, "score_chosen": math.nan}])
    recipe = write_recipe(tmp_path, base={**SFT, "stage": "rm"}, data={"train": [{"path": data}], "max_length": 32})
    err = fails(capsys, "train", str(recipe))
    assert "line 2 of pairs.jsonl" in err and "'score_chosen' must be a finite number" in err


def test_a_key_given_twice_in_a_recipe_is_refused(tmp_path, capsys):
    recipe = tmp_path / "twice.yaml"
    recipe.write_text("stage: pretrain\noutput_dir: out\nmodel: {name: tiny-llama}\nstage: sft\n"
                      "data: {train: [{name: tinytext}]}\n")
    err = fails(capsys, "config", str(recipe))
    assert "line 4" in err and "'stage' appears twice" in err and "first on line 1" in err


def test_override_errors_blame_the_command_line(tmp_path, capsys):
    err = fails(capsys, "config", str(write_recipe(tmp_path)), "train.warmup.steps=3")
    assert "'train.warmup' (set in the command line)" in err or "set in the command line" in err
    err = fails(capsys, "config", str(write_recipe(tmp_path)), "train.lr.x=1")
    assert "Override 'train.lr.x=1'" in err


def test_checks_across_keys_do_not_end_in_got_a_mapping(tmp_path, capsys):
    recipe = write_recipe(tmp_path, base={**SFT, "stage": "ppo"}, data={"train": [{"name": "arithmetic-prompts"}]},
                          ppo={"reward_functions": ["arithmetic"], "rollout_batch_size": 5})
    err = fails(capsys, "config", str(recipe))
    assert "must be a multiple of the mini-batch" in err and "got a mapping" not in err


def test_a_truncated_pair_reports_the_tokens_that_train(tmp_path, capsys):
    """A 1 MB answer cut to data.max_length counts as the tokens kept, not the million it had."""
    long = "word " * 200_000
    data = jsonl(tmp_path / "pairs.jsonl", [{"prompt": "Say it.", "chosen": long, "rejected": "no"},
                                           {"prompt": "Say 2.", "chosen": "2", "rejected": "3"}])
    recipe = write_recipe(tmp_path, base={**SFT, "stage": "rm"}, data={"train": [{"path": data}], "max_length": 64},
                          train={"max_steps": 1, "micro_batch_size": 2}, rm={"stats_samples": 2},
                          adapter={"type": "none"})
    assert main(["train", str(recipe)]) == 0, capsys.readouterr().err[-3000:]
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["data"]["train_counts"] == {"truncated": 1, "kept": 1}
    assert info["data"]["splits"]["train"]["tokens"] <= 4 * 64


def test_the_contract_still_holds_for_the_tiny_recipe(tmp_path):
    """The base every case above edits is itself valid (a typo in the harness would make every case pass)."""
    assert main(["config", str(write_recipe(tmp_path, base=TINY_PRETRAIN))]) == 0
