"""SFT row formats, chat templating and loss masks."""

from __future__ import annotations

import json

import pytest
import torch

from llmforge.config.schema import DataConfig
from llmforge.data.builtin.corpus import render_chat
from llmforge.data.chat import IGNORE, encode_conversation
from llmforge.data.formats import RowError, to_conversation, to_prompt
from llmforge.data.sft import prepare_sft_data
from llmforge.errors import UserError
from llmforge.registry import FAMILIES
from llmforge.registry.tokenizer import tiny_tokenizer


def conv(row, fmt):
    return to_conversation(row, fmt, "test.jsonl", 3)


def test_alpaca_with_input_system_and_history():
    row = {"instruction": "Add them.", "input": "2 and 3", "output": "5", "system": "Be brief.",
           "history": [["Hi", "Hello!"]]}
    assert conv(row, "alpaca") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Add them.\n\n2 and 3"}, {"role": "assistant", "content": "5"}]


def test_sharegpt_roles_and_system_column():
    row = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hey"}], "system": "S"}
    assert conv(row, "sharegpt") == [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"},
                                     {"role": "assistant", "content": "Hey"}]
    row = {"conversations": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}]}
    assert conv(row, "sharegpt")[1]["role"] == "assistant"


def test_messages_multi_turn_and_content_parts():
    row = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": [{"type": "text",
                                                                                          "text": "Hi"}]},
                        {"role": "assistant", "content": "A"}, {"role": "user", "content": "B"},
                        {"role": "assistant", "content": "C"}]}
    messages = conv(row, "messages")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[1]["content"] == "Hi"


@pytest.mark.parametrize("row, fmt, message", [
    ({"instruction": "x"}, "alpaca", "row 3: 'output' missing field"),
    ({"instruction": "x", "output": 5}, "alpaca", "'output' must be text, got int"),
    ({"conversations": []}, "sharegpt", "'conversations' must be a non-empty list"),
    ({"conversations": [{"from": "alien", "value": "x"}]}, "sharegpt", "'alien', not a known role"),
    ({"messages": [{"role": "user", "content": "only a question"}]}, "messages", "no assistant turn"),
    ({"messages": "text"}, "messages", "must be a non-empty list"),
])
def test_malformed_rows_name_row_and_field(row, fmt, message):
    with pytest.raises(RowError, match=message) as info:
        conv(row, fmt)
    assert "test.jsonl, row 3" in str(info.value) and "columns:" in str(info.value)


def test_empty_answer_is_skipped_not_an_error():
    assert conv({"instruction": "x", "output": "  "}, "alpaca") is None


def test_prompt_rows():
    assert to_prompt({"prompt": "Hi"}, "p", 0) == [{"role": "user", "content": "Hi"}]
    assert to_prompt({"prompt": [{"role": "user", "content": "Hi"}]}, "p", 0)[0]["content"] == "Hi"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_loss_falls_exactly_on_assistant_turns(family):
    tokenizer = tiny_tokenizer(FAMILIES[family])
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 3?"},
                {"role": "assistant", "content": "5"}, {"role": "user", "content": "And 4 + 4?"},
                {"role": "assistant", "content": "8"}]
    encoded = encode_conversation(tokenizer, messages)
    trained = [t for t, label in zip(encoded.input_ids, encoded.labels, strict=True) if label != IGNORE]
    text = tokenizer.decode(trained)
    assert "5" in text and "8" in text and "What is" not in text and "brief" not in text
    stops = set(FAMILIES[family].stop_tokens) or {tokenizer.eos_token}
    assert any(stop in text for stop in stops), "the end-of-turn token must carry loss, or the model never stops"
    # labels equal input ids wherever they are not masked
    assert all(label in (IGNORE, t) for t, label in zip(encoded.input_ids, encoded.labels, strict=True))
    assert encode_conversation(tokenizer, messages, train_on="all").labels == encoded.input_ids


def test_masking_works_for_a_template_without_generation_markers():
    tokenizer = tiny_tokenizer(FAMILIES["qwen2"])
    tokenizer.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                               "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    encoded = encode_conversation(tokenizer, [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}])
    trained = tokenizer.decode([t for t, lab in zip(encoded.input_ids, encoded.labels, strict=True) if lab != IGNORE])
    assert trained == "A<|im_end|>\n"


def test_corpus_chat_rendering_matches_transformers():
    messages = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Yes."}]
    for family in FAMILIES.values():
        assert render_chat(family.chat_template, messages) == tiny_tokenizer(family).apply_chat_template(
            messages, tokenize=False)


def _write(tmp_path, rows, name="d.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_over_long_samples_truncated_or_dropped_and_counted(tmp_path):
    tokenizer = tiny_tokenizer(FAMILIES["qwen2"])
    rows = [{"instruction": "Say it.", "output": "word " * n} for n in (1, 2, 200)] + [{"instruction": "x",
                                                                                      "output": ""}]
    path = _write(tmp_path, rows)
    cfg = DataConfig(train=[{"path": path, "format": "alpaca"}], max_length=48)
    data = prepare_sft_data(cfg, tokenizer, seed=0)
    assert data.stats["train_samples"] == 3
    assert all(len(ids) <= 48 for ids in data.train["input_ids"])
    dropped = prepare_sft_data(cfg.model_copy(update={"truncation": "drop"}), tokenizer, seed=0)
    assert dropped.stats["train_samples"] == 2


def test_column_mapping_for_alpaca(tmp_path):
    path = _write(tmp_path, [{"question": "Q?", "response": "R."}])
    cfg = DataConfig(train=[{"path": path, "format": "alpaca", "columns": {"instruction": "question",
                                                                           "output": "response"}}])
    data = prepare_sft_data(cfg, tiny_tokenizer(FAMILIES["llama"]), seed=0)
    assert data.stats["train_samples"] == 1


def test_malformed_file_row_is_a_user_error(tmp_path):
    path = _write(tmp_path, [{"instruction": "ok", "output": "fine"}, {"instruction": "no output"}])
    with pytest.raises(UserError, match=r"line 2 of d.jsonl: 'output' missing field"):
        prepare_sft_data(DataConfig(train=[{"path": path, "format": "alpaca"}]), tiny_tokenizer(FAMILIES["llama"]),
                         seed=0)


def test_prompt_rows_become_the_accuracy_set():
    cfg = DataConfig(train=[{"name": "arithmetic-sft", "options": {"num_samples": 20}}],
                     eval=[{"name": "arithmetic-prompts", "split": "test", "options": {"num_samples": 7}}])
    data = prepare_sft_data(cfg, tiny_tokenizer(FAMILIES["llama"]), seed=0)
    assert len(data.accuracy) == 7 and data.eval is None
    assert data.accuracy[0]["answer"].lstrip("-").isdigit()


def test_packed_and_unpacked_give_the_same_loss_on_the_same_samples():
    """Padding-free packing (TRL's collator) keeps samples apart: the loss equals the padded batch's.

    transformers isolates packed samples by their position ids only when no KV cache is built, which
    is why TRL's SFTTrainer passes use_cache=False; the call below does the same.
    """
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from llmforge.config.schema import ModelConfig
    from llmforge.registry import load_model

    torch.manual_seed(0)
    loaded = load_model(ModelConfig(name="tiny-llama"))
    model, tokenizer = loaded.model.eval(), loaded.tokenizer
    samples = []
    for a, b in ((2, 3), (10, 7), (13, 13), (1, 0)):
        enc = encode_conversation(tokenizer, [{"role": "user", "content": f"What is {a} + {b}?"},
                                              {"role": "assistant", "content": str(a + b)}])
        samples.append({"input_ids": enc.input_ids, "labels": enc.labels})
    padded = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)(samples)
    packed = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)(samples)
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
    with torch.no_grad():
        loss_padded = model(**padded).loss
        loss_packed = model(**packed, use_cache=False).loss
        # Control: the same packed row with positions running on (no per-sample reset) must differ.
        leaky = model(input_ids=packed["input_ids"], labels=packed["labels"], use_cache=False).loss
    assert torch.allclose(loss_padded, loss_packed, atol=1e-5)
    assert not torch.allclose(loss_padded, leaky, atol=1e-3)


def test_counts_survive_the_cache(tmp_path):
    tokenizer = tiny_tokenizer(FAMILIES["qwen2"])
    path = _write(tmp_path, [{"instruction": "Say it.", "output": "word " * n} for n in (1, 200)])
    cfg = DataConfig(train=[{"path": path, "format": "alpaca"}], max_length=48)
    first = prepare_sft_data(cfg, tokenizer, seed=0).stats["train_counts"]
    again = prepare_sft_data(cfg, tokenizer, seed=0).stats["train_counts"]  # read from the cache
    assert first == again == {"kept": 1, "truncated": 1}
