"""Preference rows in every shape become (prompt, chosen, rejected) conversations; bad rows are named."""

from __future__ import annotations

import json

import pytest

from llmforge.config.schema import DataConfig
from llmforge.data.formats import RowError
from llmforge.data.pairs import parse_hh, skip_reason, to_pair
from llmforge.data.preference import encode_pair, prepare_preference_data, prepare_prompt_data
from llmforge.errors import UserError
from llmforge.registry import FAMILIES
from llmforge.registry.tokenizer import tiny_tokenizer

USER = {"role": "user", "content": "What is 2 + 2?"}


def _answer(text):
    return [{"role": "assistant", "content": text}]


def test_explicit_prompt_with_strings():
    pair = to_pair({"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"}, "src", 0)
    assert pair.prompt == [USER] and pair.chosen == _answer("4") and pair.rejected == _answer("5")


def test_explicit_prompt_with_message_lists_that_repeat_the_prompt():
    # UltraFeedback's shape: the prompt is a string and chosen/rejected are whole conversations
    row = {"prompt": "What is 2 + 2?", "chosen": [USER, *_answer("4")], "rejected": [USER, *_answer("5")]}
    pair = to_pair(row, "src", 0)
    assert pair.prompt == [USER] and pair.chosen == _answer("4") and pair.rejected == _answer("5")


def test_implicit_prompt_from_shared_conversation_prefix():
    system = {"role": "system", "content": "Be brief."}
    row = {"chosen": [system, USER, *_answer("4")], "rejected": [system, USER, *_answer("22")]}
    pair = to_pair(row, "src", 0)
    assert pair.prompt == [system, USER] and pair.chosen == _answer("4") and pair.rejected == _answer("22")


def test_anthropic_hh_transcripts_become_conversations():
    chosen = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: What is 2 + 2?\n\nAssistant: It is 4."
    rejected = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: What is 2 + 2?\n\nAssistant: No idea."
    pair = to_pair({"chosen": chosen, "rejected": rejected}, "hh", 3)
    assert [m["role"] for m in pair.prompt] == ["user", "assistant", "user"]
    assert pair.prompt[0]["content"] == "Hi there" and pair.prompt[2]["content"] == "What is 2 + 2?"
    assert pair.chosen == _answer("It is 4.") and pair.rejected == _answer("No idea.")
    assert parse_hh("no markers here") is None


def test_implicit_plain_texts_split_at_the_shared_prompt():
    pair = to_pair({"chosen": "Q: capital of France? A: Paris", "rejected": "Q: capital of France? A: Rome"}, "s", 0)
    assert pair.prompt[0]["content"] == "Q: capital of France? A:"
    assert pair.chosen == _answer("Paris") and pair.rejected == _answer("Rome")


@pytest.mark.parametrize(("row", "reason"), [
    ({"prompt": "q", "chosen": "a", "rejected": "a"}, "identical"),
    ({"prompt": "q", "chosen": "a", "rejected": "  "}, "empty_answer"),
    ({"prompt": "q", "chosen": "a", "rejected": "b", "score_chosen": 7.0, "score_rejected": 7.0}, "tie"),
    ({"prompt": "q", "chosen": "a", "rejected": "b", "score_chosen": 8.0, "score_rejected": 7.0}, None),
])
def test_pairs_that_teach_nothing_are_recognised(row, reason):
    assert skip_reason(row, to_pair(row, "s", 0)) == reason


@pytest.mark.parametrize(("row", "message"), [
    ({"prompt": "q", "chosen": "a"}, "'rejected' missing field"),
    ({"prompt": "q", "chosen": 3, "rejected": "b"}, "'chosen' must be a string or a list of messages, got int"),
    ({"prompt": "q", "chosen": [{"role": "wizard", "content": "a"}], "rejected": "b"}, "not a known role"),
    ({"chosen": [USER, *_answer("4")], "rejected": [{"role": "user", "content": "other"}, *_answer("5")]},
     "do not start with a shared prompt"),
    ({"prompt": "q", "chosen": [USER], "rejected": "b"}, "'chosen' has no assistant turn"),
])
def test_malformed_rows_name_the_row_and_field(row, message):
    with pytest.raises(RowError, match=r"src, row 7: .*" ):
        to_pair(row, "src", 7)
    with pytest.raises(RowError) as caught:
        to_pair(row, "src", 7)
    assert message in str(caught.value) and "'preference' rows need 'chosen' and 'rejected'" in str(caught.value)


def test_encoded_answers_continue_the_prompt_tokens():
    tokenizer = tiny_tokenizer(FAMILIES["llama"])
    pair = to_pair({"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "15"}, "s", 0)
    prompt, chosen, rejected = encode_pair(tokenizer, pair)
    assert tokenizer.decode(prompt).endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert tokenizer.decode(chosen) == "4<|eot_id|>" and tokenizer.decode(rejected) == "15<|eot_id|>"


def _file(tmp_path, rows):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_skipped_and_over_long_pairs_are_counted(tmp_path):
    rows = [{"prompt": "What is 1 + 1?", "chosen": "2", "rejected": "3"},
            {"prompt": "What is 1 + 2?", "chosen": "3", "rejected": "3"},
            {"prompt": "What is 1 + 3?", "chosen": "", "rejected": "3"},
            {"prompt": "Tell me a story. " * 20, "chosen": "Once", "rejected": "No"}]
    cfg = DataConfig(train=[{"path": _file(tmp_path, rows)}], max_length=48, truncation="drop",
                     cache_dir=str(tmp_path / "cache"))
    data = prepare_preference_data(cfg, tiny_tokenizer(FAMILIES["llama"]), 0, "rm")
    assert len(data.train) == 1
    assert data.stats["train_counts"] == {"kept": 1, "identical": 1, "empty_answer": 1, "dropped_too_long": 1}


def test_a_source_with_nothing_usable_is_a_clear_error(tmp_path):
    cfg = DataConfig(train=[{"path": _file(tmp_path, [{"prompt": "q", "chosen": "a", "rejected": "a"}])}],
                     cache_dir=str(tmp_path / "cache"))
    with pytest.raises(UserError, match=r"no usable preference pairs .*\(1 identical\)"):
        prepare_preference_data(cfg, tiny_tokenizer(FAMILIES["llama"]), 0, "dpo")


def test_sft_rows_are_refused_with_the_stage_named(tmp_path):
    cfg = DataConfig(train=[{"name": "arithmetic-sft", "options": {"num_samples": 4}}])
    with pytest.raises(UserError, match="'messages' format; the dpo stage reads preference rows"):
        prepare_preference_data(cfg, tiny_tokenizer(FAMILIES["llama"]), 0, "dpo")


def test_built_in_pairs_are_correct_versus_wrong_with_a_disjoint_held_out_split():
    cfg = DataConfig(train=[{"name": "arithmetic-pref", "options": {"num_samples": 300, "max_operand": 9}}],
                     eval=[{"name": "arithmetic-pref", "split": "test", "options": {"max_operand": 9}}])
    data = prepare_preference_data(cfg, tiny_tokenizer(FAMILIES["llama"]), 0, "rm")
    train_prompts = {row["prompt"][-1]["content"] for row in data.train}
    test_prompts = {row["prompt"][-1]["content"] for row in data.eval}
    assert train_prompts and test_prompts and not train_prompts & test_prompts
    for row in data.eval:
        assert row["chosen"][0]["content"] != row["rejected"][0]["content"]


def test_prompt_data_keeps_answers_for_verifiable_rewards():
    cfg = DataConfig(train=[{"name": "arithmetic-prompts", "options": {"num_samples": 5}}],
                     eval=[{"name": "arithmetic-prompts", "split": "test", "options": {"num_samples": 3}}])
    prompts, graded, _ = prepare_prompt_data(cfg, "grpo")
    assert len(prompts) == 5 and all(a is not None for a in prompts["answer"]) and len(graded) == 3
    assert prompts[0]["prompt"][0]["role"] == "user"
