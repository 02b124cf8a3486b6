"""Model registry: presets of each family, local folders, runs as artifacts, tokenizer."""

from __future__ import annotations

import json
import random

import pytest
import torch
from transformers import AutoTokenizer

from llmforge.cli import main
from llmforge.config.schema import ModelConfig
from llmforge.errors import UserError
from llmforge.registry import FAMILIES, PRESETS, load_model, resolve_source
from llmforge.registry.tokenizer import tiny_tokenizer

TINY_PRESETS = [name for name in PRESETS if name.startswith("tiny-")]


@pytest.mark.parametrize("name", TINY_PRESETS)
def test_tiny_preset_builds_trains_and_has_family_defaults(name):
    torch.manual_seed(0)
    loaded = load_model(ModelConfig(name=name))
    model, tokenizer, family = loaded.model, loaded.tokenizer, loaded.family
    params = sum(p.numel() for p in model.parameters())
    assert 0.5e6 < params < 2e6, "tiny presets must stay CPU-sized"
    assert model.config.vocab_size >= len(tokenizer)
    assert model.config.model_type in family.model_types
    assert model.config._attn_implementation == "sdpa"
    batch = tokenizer(["Tom went to the park."], return_tensors="pt")
    out = model(**batch, labels=batch["input_ids"])
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert 4.0 < out.loss.item() < 9.0  # near ln(vocab) for random init
    module_names = {n.split(".")[-1] for n, _ in model.named_modules()}
    assert set(family.lora_targets) <= module_names, "LoRA targets must name real modules"
    assert type(model.get_submodule(family.layers_path)[0]).__name__ == family.decoder_layer


def test_preset_init_is_seeded():
    torch.manual_seed(1)
    a = load_model(ModelConfig(name="tiny-qwen2")).model
    torch.manual_seed(1)
    b = load_model(ModelConfig(name="tiny-qwen2")).model
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_config_overrides_resize_and_reject_typos():
    model = load_model(ModelConfig(name="tiny-llama", config_overrides={"num_hidden_layers": 2})).model
    assert len(model.model.layers) == 2
    with pytest.raises(UserError, match="num_hidden_layers"):
        load_model(ModelConfig(name="tiny-llama", config_overrides={"num_hiden_layers": 2}))


def test_local_hf_folder_loads_through_from_pretrained(tmp_path):
    torch.manual_seed(0)
    saved = load_model(ModelConfig(name="tiny-gpt2"))
    saved.model.save_pretrained(tmp_path)
    saved.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(ModelConfig(name=str(tmp_path)))
    assert loaded.source.kind == "folder"
    assert loaded.family.name == "gpt2"
    for (name, a), b in zip(saved.model.state_dict().items(), loaded.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert loaded.tokenizer.chat_template == FAMILIES["gpt2"].chat_template


def test_run_folder_must_be_completed(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"status": "running"}))
    with pytest.raises(UserError, match="has not completed"):
        resolve_source(str(tmp_path))


def test_bad_names_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="neither a Hugging Face model folder"):
        resolve_source(str(tmp_path))
    with pytest.raises(UserError, match="does not exist"):
        resolve_source("./no/such/model")
    with pytest.raises(UserError, match="Did you mean 'tiny-llama'"):
        load_model(ModelConfig(name="tiny-lama"))  # a hub id offline: fails with the preset hint


def test_a_missing_name_whose_first_folder_is_here_is_a_path_not_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "sft-lora").mkdir(parents=True)
    with pytest.raises(UserError, match="does not exist. Did you mean 'runs/sft-lora'"):
        resolve_source("runs/sft-lroa")  # offline, asking the hub for it took ~33 s of retries
    with pytest.raises(UserError, match="runs/ holds sft-lora."):
        resolve_source("runs/dpo")
    assert resolve_source("Qwen/Qwen2.5-0.5B").kind == "hub"  # no folder Qwen here: a hub id


def test_trust_remote_code_is_off_by_default():
    assert ModelConfig(name="x").trust_remote_code is False


def test_tokenizer_round_trips_any_utf8():
    tokenizer = tiny_tokenizer(FAMILIES["llama"])
    rng = random.Random(0)
    pieces = ["héllo wörld", "日本語のテキスト", "emoji 😀🚀", "tabs\tand\nnewlines", "\x00\x01", "Ω≈ç√∫",
              "".join(chr(rng.randint(0x20, 0x2FFFF)) for _ in range(200)).encode("utf-8", "ignore")
              .decode("utf-8", "ignore")]
    for text in pieces:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.convert_ids_to_tokens(tokenizer("123")["input_ids"]) == ["1", "2", "3"]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_chat_templates_mark_exactly_the_assistant_tokens(family):
    tokenizer = tiny_tokenizer(FAMILIES[family])
    messages = [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "5"}]
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assistant = tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m])
    assert assistant.strip().startswith("5")
    assert "What is" not in assistant
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    assert full.startswith(prompt), "the generation prompt must be a prefix of the rendered conversation"


def test_models_command_lists_presets_and_runs(tmp_path, capsys):
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"stage": "pretrain", "status": "completed"}))
    assert main(["models", "--runs", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    for name in TINY_PRESETS:
        assert name in out
    assert str(run) in out and "completed" in out


def test_saved_tokenizer_loads_with_auto_tokenizer(tmp_path):
    tokenizer = tiny_tokenizer(FAMILIES["qwen2"])
    tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again("a b 12")["input_ids"] == tokenizer("a b 12")["input_ids"]
    assert again.chat_template == tokenizer.chat_template


def test_reward_models_get_a_pad_token_distinct_from_eos():
    from transformers import AutoModelForSequenceClassification

    from llmforge.registry.tokenizer import ensure_distinct_pad

    loaded = load_model(ModelConfig(name="tiny-llama"), AutoModelForSequenceClassification, num_labels=1)
    tokenizer, model = loaded.tokenizer, loaded.model
    tokenizer.pad_token = tokenizer.eos_token  # as many hub tokenizers ship
    ensure_distinct_pad(model, tokenizer)
    assert tokenizer.pad_token == "<|pad|>" and model.config.pad_token_id == tokenizer.pad_token_id
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_an_adapter_folder_loads_as_a_plain_trainable_model(tmp_path):
    """Starting a stage (or PPO's value model) from a LoRA run must train every weight, like any other model:
    peft freezes the base while it loads an adapter, and merging does not undo that."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = load_model(ModelConfig(name="tiny-llama"))
    base.model.save_pretrained(tmp_path / "base")
    base.tokenizer.save_pretrained(tmp_path / "base")
    peft_model = get_peft_model(load_model(ModelConfig(name=str(tmp_path / "base"))).model,
                                LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    loaded = load_model(ModelConfig(name=str(tmp_path / "adapter")))
    assert all(p.requires_grad for p in loaded.model.parameters())
    merged_q = loaded.model.model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(merged_q, base.model.model.layers[0].self_attn.q_proj.weight)  # the adapter is in


def test_an_sft_adapter_loads_under_a_reward_head(tmp_path):
    """A reward model started from a LoRA SFT run gets the SFT weights: the causal-LM adapter's LoRA weights
    are merged into the backbone under the new one-score head (peft's causal-LM wrapper cannot hold it)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    base = load_model(ModelConfig(name="tiny-llama"))
    base.model.save_pretrained(tmp_path / "base")
    base.tokenizer.save_pretrained(tmp_path / "base")
    peft_model = get_peft_model(load_model(ModelConfig(name=str(tmp_path / "base"))).model,
                                LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False,
                                           task_type="CAUSAL_LM"))
    peft_model.save_pretrained(tmp_path / "adapter")
    causal = load_model(ModelConfig(name=str(tmp_path / "adapter"))).model
    scorer = load_model(ModelConfig(name=str(tmp_path / "adapter")), AutoModelForSequenceClassification,
                        num_labels=1).model
    q = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(scorer.state_dict()[q], causal.state_dict()[q])
    assert not torch.equal(scorer.state_dict()[q], base.model.state_dict()[q])
    assert scorer.config.num_labels == 1
