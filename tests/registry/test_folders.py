"""What llmforge publishes, read by tools outside it: plain transformers and peft, and a moved run folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from peft import AutoPeftModelForCausalLM, AutoPeftModelForSequenceClassification
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, pipeline

from llmforge.config import load_config
from llmforge.eval.reward_model import load_reward_model, score_conversations
from llmforge.export import export
from llmforge.inference import generate, load_for_inference, stops_of
from llmforge.stages import run as run_stage
from tests.helpers import DIGITS, ROOT, write_recipe

QUESTION = [{"role": "user", "content": "What is 3 + 4?"}]


def plain_completion(model, tokenizer) -> list[int]:
    """Greedy completion ids through transformers' own generate, with only the folder's generation config."""
    ids = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=24, do_sample=False)
    return out[0, ids["input_ids"].shape[1]:].tolist()


def test_plain_transformers_stops_where_llmforge_stops(sft_short, tmp_path):
    """A chat model's final/ (and its export) carries the end-of-turn token in generation_config.json: plain
    generate() ends the answer there instead of running on, and says what llmforge says."""
    final = sft_short / "final"
    config = json.loads((final / "generation_config.json").read_text())
    loaded = load_for_inference(str(sft_short))
    stops = stops_of(loaded)
    assert set(config["eos_token_id"]) == set(stops) and len(stops) == 2  # <|endoftext|> and <|eot_id|>
    tokenizer = AutoTokenizer.from_pretrained(final)
    ours = generate(loaded, [QUESTION], max_new_tokens=24)[0]
    for folder in (final, export(str(sft_short), str(tmp_path / "exported"))):
        ids = plain_completion(AutoModelForCausalLM.from_pretrained(folder), tokenizer)
        stop = next(i for i, token in enumerate(ids) if token in stops)
        assert stop == len(ids) - 1, f"generation ran on past the stop token: {tokenizer.decode(ids)!r}"
        assert tokenizer.decode(ids, skip_special_tokens=True) == ours
    reply = pipeline("text-generation", model=str(final))(QUESTION, max_new_tokens=24, do_sample=False)
    assert reply[0]["generated_text"][-1]["content"] == ours


@pytest.fixture(scope="module")
def lora_runs(pretrained, tmp_path_factory):
    """A LoRA SFT run and a LoRA reward model on it, a few steps each (only what they publish matters here)."""
    folder = tmp_path_factory.mktemp("lora-runs")
    short = {"train": {"max_steps": 4, "micro_batch_size": 8}, "checkpoint": {"every_steps": 100},
             "logging": {"every_steps": 2}}
    sft = write_recipe(folder, "sft.yaml", load_config_yaml("sft/tiny-lora.yaml"), output_dir=str(folder / "sft"),
                       model={"name": str(pretrained)}, eval={"every_steps": None}, **short,
                       data={"train": [{"name": "arithmetic-sft", "options": {"num_samples": 64, **DIGITS}}],
                             "eval": []})
    run_stage(load_config(sft))
    runs = {"sft": folder / "sft"}
    for name, adapter in (("rm-lora", {"type": "lora", "r": 8, "alpha": 16}), ("rm-full", {"type": "none"})):
        rm = write_recipe(folder, f"{name}.yaml", load_config_yaml("rm/tiny.yaml"), output_dir=str(folder / name),
                          model={"name": str(runs["sft"])}, adapter=adapter, **short,
                          data={"train": [{"name": "arithmetic-pref", "options": {"num_samples": 64, **DIGITS}}],
                                "eval": [], "max_length": 64}, rm={"stats_samples": 16})
        run_stage(load_config(rm))
        runs[name] = folder / name
    return runs


def load_config_yaml(relative: str) -> dict:
    import yaml

    recipe = yaml.safe_load((ROOT / "configs" / relative).read_text())
    if "extends" in recipe:
        parent = load_config_yaml(str((ROOT / "configs" / relative).parent.relative_to(ROOT / "configs")
                                      / recipe.pop("extends")))
        from tests.helpers import deep_update

        recipe = deep_update(parent, recipe)
    return recipe


@pytest.mark.parametrize("kind", ["rm-lora", "rm-full"])
def test_reward_model_loads_with_the_standard_loaders(lora_runs, kind):
    """AutoModelForSequenceClassification and (for LoRA) AutoPeftModelForSequenceClassification read a
    one-score head from final/ and score as llmforge does."""
    final = lora_runs[kind] / "final"
    conversation = QUESTION + [{"role": "assistant", "content": "7"}]
    rm = load_reward_model(str(lora_runs[kind]))
    expected = score_conversations(rm, [conversation])[0].item()
    tokenizer = AutoTokenizer.from_pretrained(final)
    ids = tokenizer(tokenizer.apply_chat_template(conversation, tokenize=False), add_special_tokens=False,
                    return_tensors="pt")
    loaders = [AutoModelForSequenceClassification]
    if (final / "adapter_config.json").is_file():
        loaders.append(AutoPeftModelForSequenceClassification)
        assert json.loads((lora_runs[kind] / "base" / "config.json").read_text())["id2label"] == {"0": "LABEL_0"}
    for loader in loaders:
        model = loader.from_pretrained(final).eval()
        assert model.config.num_labels == 1
        with torch.no_grad():
            score = model(**ids).logits[0, 0].item()
        assert score == pytest.approx(expected, abs=1e-5), loader.__name__


def test_lora_sft_final_loads_with_peft_and_transformers(lora_runs):
    final = lora_runs["sft"] / "final"
    tokenizer = AutoTokenizer.from_pretrained(final)
    answers = {loader.__name__: plain_completion(loader.from_pretrained(final), tokenizer)
               for loader in (AutoModelForCausalLM, AutoPeftModelForCausalLM)}
    assert len(set(map(tuple, answers.values()))) == 1


PIPELINE = """
output_dir: runs/moved
defaults: {seed: 3}
stages:
  pretrain:
    extends: RECIPES/pretrain/tiny.yaml
    data: {train: [{name: tinytext, options: {num_documents: 100}}], eval: [], max_length: 64}
    train: {max_steps: 3, micro_batch_size: 4}
    eval: {every_steps: null}
  sft:
    extends: RECIPES/sft/tiny-lora.yaml
    model: {name: "${pretrain.output}"}
    data: {train: [{name: arithmetic-sft, options: {num_samples: 32, max_operand: 9}}], eval: []}
    train: {max_steps: 3, micro_batch_size: 4}
    eval: {every_steps: null}
  rm:
    extends: RECIPES/rm/tiny.yaml
    model: {name: "${sft.output}"}
    data: {train: [{name: arithmetic-pref, options: {num_samples: 32, max_operand: 9}}], eval: []}
    train: {max_steps: 3, micro_batch_size: 4}
    rm: {stats_samples: 8}
"""


def test_a_moved_pipeline_folder_still_loads_and_is_current(tmp_path):
    """Copy a finished pipeline's folder elsewhere and delete the original: every stage loads from the copy
    (adapters find their bases relative to themselves), lineage follows the copy, and the pipeline run
    again from there finds every stage current."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    (first / "pipeline.yaml").write_text(PIPELINE.replace("RECIPES", str(ROOT / "configs")))
    env_cmd = [sys.executable, "-m", "llmforge", "pipeline", "pipeline.yaml"]
    done = subprocess.run(env_cmd, cwd=first, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    before = generate(load_for_inference(str(first / "runs/moved/sft")), ["What is 2 + 2?"], max_new_tokens=4)
    shutil.copytree(first, second)
    shutil.rmtree(first)
    assert generate(load_for_inference(str(second / "runs/moved/sft")), ["What is 2 + 2?"],
                    max_new_tokens=4) == before
    assert load_reward_model(str(second / "runs/moved/rm")).model.config.num_labels == 1
    lineage = subprocess.run([sys.executable, "-m", "llmforge", "lineage", "runs/moved/rm"], cwd=second,
                             capture_output=True, text=True, timeout=120)
    assert lineage.returncode == 0 and str(first) not in lineage.stdout and "pretrain, completed" in lineage.stdout
    again = subprocess.run(env_cmd, cwd=second, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [line.split(":")[1].split()[0] for line in again.stdout.splitlines() if line.startswith(
        ("pretrain:", "sft:", "rm:"))] == ["skipped"] * 3
