"""Fault harness, what already held when the harness first ran, kept here so it keeps holding: YAML code
tags refused, no pickle loaded from a model folder, one writer per output folder."""

from __future__ import annotations

import time

import torch

from llmforge.config.schema import ModelConfig
from llmforge.registry import load_model
from tests.faults.harness import Exploit, fails
from tests.helpers import kill_when, run_cli, start_run, write_recipe


def test_yaml_code_tags_are_refused(tmp_path, capsys):
    canary = tmp_path / "pwned"
    recipe = tmp_path / "evil.yaml"
    recipe.write_text(f"stage: pretrain\noutput_dir: !!python/object/apply:os.mkdir ['{canary}']\n")
    err = fails(capsys, "config", str(recipe))
    assert "invalid YAML" in err and not canary.exists()


def test_a_model_folder_holding_only_a_pickle_is_refused(tmp_path, capsys):
    """A model folder whose weights are a pytorch_model.bin (a pickle) is not loaded: safetensors only."""
    loaded = load_model(ModelConfig(name="tiny-llama"))
    folder = tmp_path / "model"
    loaded.model.config.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    canary = tmp_path / "pwned"
    torch.save({"weights": Exploit(canary)}, folder / "pytorch_model.bin")
    recipe = write_recipe(tmp_path, model={"name": str(folder)})
    err = fails(capsys, "train", str(recipe), f"output_dir={tmp_path / 'run'}")
    assert "Could not load the weights" in err and not canary.exists()


def test_a_second_process_on_the_same_output_dir_is_refused(tmp_path):
    recipe = write_recipe(tmp_path, train={"max_steps": 200}, checkpoint={"every_steps": 100})
    first = start_run(recipe)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "run" / "run.json").is_file():  # the first run holds the folder from here on
            assert time.time() < deadline and first.poll() is None, "the first run never started"
            time.sleep(0.05)
        second = run_cli("train", str(recipe))
        assert second.returncode == 2 and "Another llmforge process is training into" in second.stderr
    finally:
        kill_when(first, lambda: True)
