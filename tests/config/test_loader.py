"""Recipes: extends, overrides, schema errors written for people."""

from __future__ import annotations

import pytest
import yaml

from llmforge.cli import main
from llmforge.config import load_config, load_raw
from llmforge.errors import UserError
from tests.helpers import run_cli, write_recipe


def _error(tmp_path, *overrides: str, **changes) -> str:
    path = write_recipe(tmp_path, **changes)
    with pytest.raises(UserError) as info:
        load_config(path, overrides)
    return str(info.value)


def test_valid_recipe_resolves_with_defaults(tmp_path):
    cfg = load_config(write_recipe(tmp_path))
    assert cfg.stage == "pretrain"
    assert cfg.train.lr == 3.0e-3
    assert cfg.checkpoint.resume == "auto"  # default filled in
    assert cfg.adapter.type == "none"


def test_unknown_key_names_file_and_suggests(tmp_path):
    message = _error(tmp_path, train={"lrr": 1.0})
    assert "unknown key 'train.lrr'" in message
    assert "Did you mean 'lr'?" in message
    assert "recipe.yaml" in message


def test_a_file_given_as_a_dataset_name_is_refused_before_the_hub_is_asked(tmp_path, capsys):
    """Offline, the hub retries a name for ~30 s before it fails; a name ending like a data file is a path."""
    message = _error(tmp_path, "data.train.0.name=mine.JSONL")
    assert "'mine.JSONL' names a file" in message and "give it as path" in message and "data.train.0" in message
    assert main(["eval", "tiny-llama", "--dataset", "held-out.jsonl"]) == 2
    assert "eval data: 'held-out.jsonl' names a file" in capsys.readouterr().err


def test_unknown_key_from_command_line_is_attributed(tmp_path):
    message = _error(tmp_path, "train.warmup=0.1")
    assert "train.warmup" in message and "the command line" in message
    assert "warmup_ratio" in message


def test_unknown_top_level_key_lists_suggestion(tmp_path):
    assert "Did you mean 'seed'?" in _error(tmp_path, seeds=3)


def test_wrong_type_names_key_and_value(tmp_path):
    message = _error(tmp_path, "train.micro_batch_size=lots")
    assert "'train.micro_batch_size'" in message and "'lots'" in message


def test_out_of_range_value(tmp_path):
    assert "'train.lr'" in _error(tmp_path, "train.lr=-1")


def test_bad_enum_value(tmp_path):
    message = _error(tmp_path, "adapter.type=lorra")
    assert "'adapter.type'" in message and "lora" in message


def test_missing_required_key(tmp_path):
    recipe = write_recipe(tmp_path)
    data = yaml.safe_load(recipe.read_text())
    del data["model"]
    recipe.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match="missing required key 'model'"):
        load_config(recipe)


def test_missing_file():
    with pytest.raises(UserError, match="Config file not found: nope.yaml"):
        load_config("nope.yaml")


def test_bad_yaml_reports_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("stage: pretrain\nmodel:\n  name: [unclosed\n")
    with pytest.raises(UserError) as info:
        load_config(path)
    assert "bad.yaml: invalid YAML at line" in str(info.value)


def test_non_mapping_yaml(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(UserError, match="must be a YAML mapping"):
        load_config(path)


def test_overrides_are_typed_by_schema(tmp_path):
    cfg = load_config(write_recipe(tmp_path), ["train.lr=1e-4", "data.packing=false", "train.max_steps=12",
                                               "logging.report_to=tensorboard"])
    assert cfg.train.lr == pytest.approx(1e-4) and isinstance(cfg.train.lr, float)
    assert cfg.data.packing is False
    assert cfg.train.max_steps == 12
    assert cfg.logging.report_to == ["tensorboard"]


def test_override_into_list_item(tmp_path):
    cfg = load_config(write_recipe(tmp_path), ["data.train.0.max_samples=5"])
    assert cfg.data.train[0].max_samples == 5
    with pytest.raises(UserError, match="needs an index below 1"):
        load_config(write_recipe(tmp_path), ["data.train.3.max_samples=5"])


def test_malformed_override(tmp_path):
    with pytest.raises(UserError, match="not of the form key.path=value"):
        load_config(write_recipe(tmp_path), ["train.lr"])


def test_extends_deep_merges_and_lists_replace(tmp_path):
    write_recipe(tmp_path, name="base.yaml")
    child = tmp_path / "child.yaml"
    child.write_text(
        "extends: base.yaml\n"
        "train: {lr: 0.01}\n"
        "data:\n  train: [{name: arithmetic-text}]\n"
    )
    cfg = load_config(child)
    assert cfg.train.lr == 0.01
    assert cfg.train.micro_batch_size == 8  # kept from base: dicts merge
    assert [s.name for s in cfg.data.train] == ["arithmetic-text"]  # lists replace
    assert cfg.data.max_length == 64


def test_extends_error_points_at_defining_file(tmp_path):
    write_recipe(tmp_path, name="base.yaml", train={"lr": 1e-3, "epochz": 1})
    child = tmp_path / "child.yaml"
    child.write_text("extends: base.yaml\nseed: 1\n")
    with pytest.raises(UserError) as info:
        load_config(child)
    assert "base.yaml" in str(info.value) and "epochs" in str(info.value)


def test_extends_cycle_and_missing_parent(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(UserError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: gone.yaml\n")
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "c.yaml")


def test_origins_track_command_line(tmp_path):
    raw = load_raw(write_recipe(tmp_path), ["train.lr=0.5"])
    assert raw.origin_of("train.lr") == "the command line"
    assert raw.origin_of("train.max_steps").endswith("recipe.yaml")


def test_data_source_needs_exactly_one_origin(tmp_path):
    message = _error(tmp_path, data={"train": [{"name": "tinytext", "path": "x.txt"}]})
    assert "exactly one of 'name'" in message


def test_cli_config_prints_resolved_yaml(tmp_path, capsys):
    assert main(["config", str(write_recipe(tmp_path)), "train.lr=0.25"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["lr"] == 0.25
    assert printed["checkpoint"]["keep_last"] == 2


def test_cli_user_error_exit_code_2_without_traceback(tmp_path):
    result = run_cli("train", str(write_recipe(tmp_path)), "train.lrr=1")
    assert result.returncode == 2
    assert "Did you mean 'lr'?" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # nothing written for a rejected recipe
