"""A LoRA run copied to another place, the original gone: llmforge follows the move (the adapter's base is also
recorded relative to the run); plain peft loads it when given the base (its adapter_config.json holds the base's
old absolute path); `llmforge export` makes a folder plain transformers loads anywhere. What README says."""

from __future__ import annotations

import json
import shutil
import subprocess

import torch

from tests.helpers import DIGITS, TINY_SFT, cli_command, write_recipe


def test_a_moved_lora_run_loads_in_llmforge_in_peft_given_its_base_and_exported_in_transformers(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmforge.config.schema import ModelConfig
    from llmforge.registry import load_model

    recipe = write_recipe(tmp_path, base=TINY_SFT, model={"name": "tiny-llama"}, output_dir=str(tmp_path / "a" / "run"),
                          adapter={"type": "lora", "r": 4, "alpha": 8},
                          data={"train": [{"name": "arithmetic-sft", "options": {"num_samples": 64, **DIGITS}}],
                                "eval": []},
                          train={"max_steps": 2, "micro_batch_size": 8}, logging={"every_steps": 1})
    assert subprocess.run(cli_command("train", str(recipe)), capture_output=True, timeout=600).returncode == 0
    moved = tmp_path / "b" / "run"
    shutil.copytree(tmp_path / "a" / "run", moved)
    shutil.rmtree(tmp_path / "a")
    recorded = json.loads((moved / "final" / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert not (tmp_path / "a").exists() and recorded.startswith(str(tmp_path / "a"))  # the old place

    ids = torch.tensor([[1, 2, 3, 4]])
    ours = load_model(ModelConfig(name=str(moved)))
    expected = ours.model(input_ids=ids).logits

    base = AutoModelForCausalLM.from_pretrained(moved / "base")
    peft = PeftModel.from_pretrained(base, moved / "final")
    assert torch.allclose(peft(input_ids=ids).logits, expected, atol=1e-5)

    out = tmp_path / "exported"
    assert subprocess.run(cli_command("export", str(moved), str(out)), capture_output=True, timeout=600).returncode == 0
    plain = AutoModelForCausalLM.from_pretrained(out)
    assert torch.allclose(plain(input_ids=ids).logits, expected, atol=1e-5)
    assert AutoTokenizer.from_pretrained(out)("What is 2 + 3?")["input_ids"]
