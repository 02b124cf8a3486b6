"""The memory check before a run: a recipe that cannot fit stops with exit 2 before any weight is loaded, naming
its largest terms and changes that fit; with the suggested change it runs."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from llmforge.config.compose import validate_dict
from llmforge.memory import Budget, GiB, checkpointing, plan
from tests.helpers import cli_command, write_recipe

SFT = {"stage": "sft", "seed": 3, "data": {"train": [{"name": "arithmetic-sft", "options": {"num_samples": 200}}],
                                          "eval": [], "max_length": 2048},
       "train": {"max_steps": 1, "micro_batch_size": 16, "lr": 1e-4}, "checkpoint": {"every_steps": 100},
       "logging": {"every_steps": 1}}


def run(recipe, *extra, limit: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli_command("train", str(recipe), *extra), capture_output=True, text=True, timeout=900,
                          env={**__import__("os").environ, "LLMFORGE_MEMORY_LIMIT": limit})


def test_full_sft_of_the_1b_shape_is_refused_before_loading_with_its_terms_and_a_change_that_fits(tmp_path):
    recipe = write_recipe(tmp_path, base=SFT, model={"name": "llama3-1b"})
    started = time.perf_counter()
    result = run(recipe, limit="12GiB")
    assert result.returncode == 2, result.stderr
    assert time.perf_counter() - started < 60  # building a 1.2B model alone takes ~25 s here: none was built
    message = result.stderr
    assert "Traceback" not in message
    assert "activations" in message and "optimizer states" in message and "12.00 GiB is free" in message
    assert "Changes that fit: " in message and "adapter.type=lora" in message
    assert not (tmp_path / "run" / "final").exists() and not (tmp_path / "run" / "base").exists()


@pytest.mark.slow
def test_a_refused_135m_run_runs_with_the_change_it_was_offered(tmp_path):
    recipe = write_recipe(tmp_path, base=SFT, model={"name": "smollm2-135m"})
    cfg = validate_dict({**SFT, "model": {"name": "smollm2-135m"}, "output_dir": str(tmp_path / "run")})
    needed = plan(cfg, "cpu", Budget(64 * GiB, "test")).needed
    limit = f"{int(needed * 0.8)}"  # a fifth too little
    refused = run(recipe, limit=limit)
    assert refused.returncode == 2, refused.stderr
    offered = re.search(r"Changes that fit: ([^(;]+) \(", refused.stderr)
    assert offered, refused.stderr
    changes = offered.group(1).split()
    accepted = run(recipe, *changes, limit=limit)
    assert accepted.returncode == 0, accepted.stderr[-2000:]
    assert (tmp_path / "run" / "final" / "config.json").is_file()


def test_force_starts_it_anyway_and_a_typo_in_the_limit_is_a_user_error(tmp_path):
    recipe = write_recipe(tmp_path, base=SFT, model={"name": "llama3-1b"}, train={"max_steps": 1})
    typo = run(recipe, "--dry-run", limit="12 gigs")
    assert typo.returncode == 0  # --dry-run plans the launch only
    bad = run(recipe, limit="12 gigs")
    assert bad.returncode == 2 and "LLMFORGE_MEMORY_LIMIT='12 gigs' is not a size" in bad.stderr


def recipe(model: str, **changes) -> object:
    data = {**SFT, "model": {"name": model}, "output_dir": "/tmp/unused"}
    for section, values in changes.items():
        data[section] = {**data.get(section, {}), **values}
    return validate_dict(data)


ROOMY = Budget(24 * GiB, "test")


def test_auto_checkpointing_follows_the_size():
    tiny = {"data": {"max_length": 64}, "train": {"micro_batch_size": 32}}  # the tiny recipes' shape
    assert not checkpointing(recipe("tiny-llama", **tiny), "cpu", ROOMY)  # activations far under 1 GiB
    assert checkpointing(recipe("tiny-llama"), "cpu", ROOMY)  # 16 x 2,048 tokens: 1.4 GiB even at 1M parameters
    lora = {"adapter": {"type": "lora"}, "train": {"micro_batch_size": 4}}
    assert checkpointing(recipe("qwen2.5-0.5b", **lora), "cpu", ROOMY)  # activations over the frozen weights
    short = {"data": {"max_length": 512}, "train": {"micro_batch_size": 2}}
    assert not checkpointing(recipe("qwen2.5-0.5b", **short), "cpu", ROOMY)  # full training that fits without
    assert checkpointing(recipe("qwen2.5-0.5b", **short), "cpu", Budget(8 * GiB, "test"))  # ... unless it won't
    off = {"adapter": {"type": "lora"}, "train": {"micro_batch_size": 4, "gradient_checkpointing": False}}
    assert not checkpointing(recipe("qwen2.5-0.5b", **off), "cpu", ROOMY)  # a setting is never overruled


def test_plan_command_prints_the_terms_and_json(tmp_path):
    recipe_path = write_recipe(tmp_path, base=SFT, model={"name": "qwen2.5-0.5b"})
    shown = subprocess.run(cli_command("plan", str(recipe_path), "train.micro_batch_size=1"), capture_output=True,
                           text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    assert "<- peak" in shown.stdout and "activations" in shown.stdout and "494M parameters" in shown.stdout
    gpu = subprocess.run(cli_command("plan", str(recipe_path), "--gpu", "4GiB", "--json"), capture_output=True,
                         text=True, timeout=300)
    import json

    planned = json.loads(gpu.stdout)
    assert planned["device"] == "cuda" and planned["fits"] is False and planned["changes_that_fit"]
