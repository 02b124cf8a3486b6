"""SFT end to end: full and LoRA training raise held-out exact-match accuracy; LoRA runs resume,
load, generate and export.

Calibration (float32, 300 SFT steps of 32 packed rows on this suite's tiny pretrain, which answers 0.0 of the
200 held-out single-digit problems): full fine-tuning answers 0.185 with the suite's seed (11), 0.205 and 0.155
with seeds 12 and 13 (2-core Xeon with AMX), and 0.08 with seed 11 on AVX2 kernels (ATEN_CPU_CAPABILITY=avx2);
LoRA (r=16) 0.17. The 200 prompts hold few distinct problems, so one problem moves accuracy by several points:
exact match is coarse, and the held-out loss (< 1.0; the pretrained base is far above) is the steadier signal.
Bounds: 0.05, above the base's 0.0 (a model that learned nothing answers none).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from llmforge.config import load_config
from llmforge.data.sft import prepare_sft_data
from llmforge.eval.exact_match import exact_match
from llmforge.inference import load_for_inference
from llmforge.stages import run as run_stage
from tests.helpers import TINY_SFT, assert_resumes_exactly, deep_update, run_cli, write_recipe

pytestmark = pytest.mark.slow

FULL_ACCURACY_BOUND = 0.05
LORA_ACCURACY_BOUND = 0.05
LORA = {"adapter": {"type": "lora", "r": 16, "alpha": 32}}


def _sft(folder, base, **changes):
    recipe = write_recipe(folder, base=TINY_SFT, model={"name": str(base)}, **changes)
    return recipe, run_stage(load_config(recipe))


def _accuracy_items(recipe):
    cfg = load_config(recipe)
    from llmforge.registry import load_model

    return prepare_sft_data(cfg.data, load_model(cfg.model).tokenizer, cfg.seed).accuracy


def test_full_sft_raises_held_out_accuracy(pretrained, sft_full):
    base = exact_match(load_for_inference(str(pretrained)), _accuracy_items(sft_full.parent / "sft.yaml"))
    assert base["accuracy"] < 0.02
    metrics = json.loads((sft_full / "run.json").read_text())["final_metrics"]
    assert metrics["eval_accuracy"] >= FULL_ACCURACY_BOUND > base["accuracy"]
    lines = [json.loads(x) for x in (sft_full / "metrics.jsonl").read_text().splitlines()]
    assert any("eval_accuracy" in line for line in lines) and metrics["eval_loss"] < 1.0


def test_lora_sft_raises_held_out_accuracy_and_saves_an_adapter(sft_lora, pretrained):
    run = sft_lora
    assert json.loads((run / "run.json").read_text())["final_metrics"]["eval_accuracy"] >= LORA_ACCURACY_BOUND
    final = run / "final"
    assert (final / "adapter_model.safetensors").is_file() and not (final / "model.safetensors").exists()
    adapter = json.loads((final / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str((pretrained / "final").resolve())
    info = json.loads((run / "run.json").read_text())
    assert info["model"]["adapter"] == "lora" and info["model"]["trainable_parameters"] == 149504


def test_generate_and_chat_on_a_lora_run(sft_lora):
    run = sft_lora
    result = run_cli("generate", str(run), "--prompt", "What is 2 + 3?", "--max-new-tokens", "6")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip()
    chat = subprocess.run([sys.executable, "-m", "llmforge", "chat", str(run), "--max-new-tokens", "6"],
                          input="What is 4 + 4?\n/reset\nWhat is 1 + 2?\n", capture_output=True, text=True,
                          timeout=120, env=dict(os.environ))
    assert chat.returncode == 0 and len(chat.stdout.strip().splitlines()) == 2


def test_export_merges_lora_into_a_plain_hf_folder(sft_lora, tmp_path):
    run = sft_lora
    out = tmp_path / "exported"
    result = run_cli("export", str(run), str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (out / "adapter_config.json").exists() and (out / "model.safetensors").is_file()
    model = AutoModelForCausalLM.from_pretrained(out)  # transformers alone, no peft
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template
    reference = load_for_inference(str(run)).model  # base + adapter, merged by llmforge
    ids = tokenizer("What is 2 + 3?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, reference(ids).logits, atol=1e-5)
    again = run_cli("export", str(run), str(out))
    assert again.returncode == 2 and "--force" in again.stderr


def test_lora_run_resumes_exactly_after_sigkill(pretrained, tmp_path):
    short = {"train": {"max_steps": 30, "micro_batch_size": 8, "lr": 3.0e-3}, "checkpoint": {"every_steps": 10},
             "logging": {"every_steps": 5}, "eval": {"max_samples": 8}}
    recipe = deep_update(TINY_SFT, {"model": {"name": str(pretrained)}, **LORA, **short})
    assert_resumes_exactly(tmp_path, recipe, kill_after_checkpoint=20)
    assert (tmp_path / "killed" / "final" / "adapter_model.safetensors").is_file()


def test_qlora_on_cpu_exits_2_with_a_clear_message(pretrained, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("QLoRA runs on this GPU")
    recipe = write_recipe(tmp_path, base=TINY_SFT, model={"name": str(pretrained)}, adapter={"type": "qlora"})
    result = run_cli("train", str(recipe))
    assert result.returncode == 2 and "needs a CUDA GPU" in result.stderr and "Traceback" not in result.stderr
