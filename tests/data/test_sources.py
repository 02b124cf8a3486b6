"""Sources: local files of each type, column mapping, malformed input, built-ins."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from llmforge.config.schema import DataConfig, DataSource
from llmforge.data.builtin import arithmetic
from llmforge.data.pretrain import prepare_pretrain_data
from llmforge.data.sources import load_source
from llmforge.errors import UserError
from llmforge.registry import FAMILIES
from llmforge.registry.tokenizer import tiny_tokenizer

TEXTS = ["The cat sat.", "A dog ran home.", "1 + 1 = 2."]


def _write(tmp_path, kind: str):
    path = tmp_path / f"data.{kind}"
    if kind == "jsonl":
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    elif kind == "json":
        path.write_text(json.dumps([{"text": t} for t in TEXTS]))
    elif kind == "csv":
        pd.DataFrame({"text": TEXTS}).to_csv(path, index=False)
    elif kind == "parquet":
        pd.DataFrame({"text": TEXTS}).to_parquet(path)
    elif kind == "txt":
        path.write_text("\n".join(TEXTS) + "\n")
    return path


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv", "parquet", "txt"])
def test_local_file_types_load(tmp_path, kind):
    loaded = load_source(DataSource(path=str(_write(tmp_path, kind))))
    assert list(loaded.rows["text"]) == TEXTS
    assert loaded.format == "text"


def test_fingerprint_follows_file_content(tmp_path):
    path = _write(tmp_path, "jsonl")
    first = load_source(DataSource(path=str(path))).fingerprint
    path.write_text(path.read_text() + json.dumps({"text": "more"}) + "\n")
    assert load_source(DataSource(path=str(path))).fingerprint != first


def test_column_mapping(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"content": t}) + "\n" for t in TEXTS))
    loaded = load_source(DataSource(path=str(path), columns={"text": "content"}))
    assert list(loaded.rows["text"]) == TEXTS
    with pytest.raises(UserError, match="columns maps to 'body'.*content"):
        load_source(DataSource(path=str(path), columns={"text": "body"}))


def _prepare(source: dict):
    cfg = DataConfig(train=[source], max_length=16)
    return prepare_pretrain_data(cfg, tiny_tokenizer(FAMILIES["llama"]), seed=0, max_steps=-1)


def test_missing_file_is_user_error(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        _prepare({"path": str(tmp_path / "none.jsonl")})


def test_empty_file_is_user_error(tmp_path):
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(UserError, match="is empty"):
        _prepare({"path": str(tmp_path / "e.jsonl")})


def test_malformed_json_line_names_file(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps({"text": "ok"}) + "\n{not json\n")
    with pytest.raises(UserError, match="broken.jsonl"):
        _prepare({"path": str(path)})


def test_wrong_type_row_is_named(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["fine", "also fine"]) + '{"text": ["a", "list"]}\n')
    with pytest.raises(UserError, match=r"rows.jsonl, line 3: field 'text' is a list, but it is a string in earlier"):
        _prepare({"path": str(path)})


def test_missing_text_column_suggests_mapping(tmp_path):
    path = tmp_path / "other.jsonl"
    path.write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(UserError, match=r"no 'text' column \(columns: body\).*columns: \{text"):
        _prepare({"path": str(path)})


def test_only_empty_rows_is_user_error(tmp_path):
    path = tmp_path / "blank.jsonl"
    path.write_text(json.dumps({"text": ""}) + "\n" + json.dumps({"text": None}) + "\n")
    with pytest.raises(UserError, match="no non-empty text rows"):
        _prepare({"path": str(path)})


def test_non_text_format_rejected_for_pretraining():
    with pytest.raises(UserError, match="'preference' format"):
        _prepare({"name": "arithmetic-pref"})


def test_unknown_builtin_option_and_split():
    with pytest.raises(UserError, match="Did you mean 'num_documents'"):
        load_source(DataSource(name="tinytext", options={"num_docs": 3}))
    with pytest.raises(UserError, match="Did you mean 'test'"):
        load_source(DataSource(name="tinytext", split="tset"))


def test_unknown_dataset_name_offline_is_user_error():
    with pytest.raises(UserError, match="not a built-in dataset"):
        load_source(DataSource(name="nobody/nothing-here"))


def test_builtins_are_deterministic():
    a = load_source(DataSource(name="arithmetic-sft", options={"num_samples": 50})).rows
    b = load_source(DataSource(name="arithmetic-sft", options={"num_samples": 50})).rows
    assert a.to_list() == b.to_list()


def test_arithmetic_splits_never_share_a_problem():
    train = {(p.a, p.op, p.b) for p in arithmetic.problems("train", 30, "+-")}
    test = {(p.a, p.op, p.b) for p in arithmetic.problems("test", 30, "+-")}
    assert train and test and not train & test
    assert 0.05 < len(test) / (len(train) + len(test)) < 0.15


def test_arithmetic_views_are_consistent():
    prefs = load_source(DataSource(name="arithmetic-pref", options={"num_samples": 200})).rows
    for row in prefs:
        a, op, b = re.search(r"(\d+) ([+-]) (\d+)", row["prompt"][0]["content"]).groups()
        expected = int(a) + int(b) if op == "+" else int(a) - int(b)
        assert row["chosen"][0]["content"] == str(expected)
        assert row["rejected"][0]["content"] != row["chosen"][0]["content"]
        assert int(row["rejected"][0]["content"]) >= 0
    prompts = load_source(DataSource(name="arithmetic-prompts", split="test")).rows
    assert len(prompts) == 200 and set(prompts.column_names) == {"prompt", "answer"}


def test_datasets_command_lists_builtins_and_formats(capsys):
    from llmforge.cli import main
    from llmforge.config.schema import DATA_FORMATS
    from llmforge.data.builtin import BUILTINS

    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in BUILTINS) and all(fmt in out for fmt in DATA_FORMATS)
    assert "max_operand=20" in out  # options with their defaults


@pytest.mark.parametrize("row, fmt", [
    ({"instruction": "q", "input": "", "output": "a"}, "alpaca"),
    ({"conversations": [{"from": "human", "value": "q"}]}, "sharegpt"),
    ({"messages": [{"role": "user", "content": "q"}], "prompt": "q"}, "messages"),
    ({"prompt": "q", "chosen": "a", "rejected": "b"}, "preference"),
    ({"prompt": "q", "answer": "1"}, "prompt"),
    ({"text": "t", "meta": 1}, "text"),
])
def test_format_is_inferred_from_columns(tmp_path, row, fmt):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(row) + "\n")
    assert load_source(DataSource(path=str(path))).format == fmt


def test_unrecognisable_columns_ask_for_a_format(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"question": "q", "reply": "a"}) + "\n")
    with pytest.raises(UserError, match=r"cannot tell the row format from its columns \(question, reply\)"):
        load_source(DataSource(path=str(path)))
