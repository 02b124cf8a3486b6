"""Packing: every token lands in exactly one block, in order; padding never carries loss."""

from __future__ import annotations

import torch

from llmforge.config.schema import DataConfig
from llmforge.data.builtin import corpus
from llmforge.data.packing import BlockCollator, pack_token_stream
from llmforge.data.pretrain import prepare_pretrain_data
from llmforge.registry import FAMILIES
from llmforge.registry.tokenizer import tiny_tokenizer


def test_pack_keeps_every_token_once_in_order():
    docs = [list(range(start, start + length)) for start, length in ((0, 5), (100, 13), (200, 1), (300, 7))]
    blocks = list(pack_token_stream(docs, block_size=4))
    flat = [t for block in blocks for t in block]
    assert flat == [t for doc in docs for t in doc]
    assert all(len(b) == 4 for b in blocks[:-1])
    assert len(blocks[-1]) == 26 % 4  # the short tail block is kept, not dropped


def test_pack_exact_multiple_has_no_empty_tail():
    assert list(pack_token_stream([[1, 2], [3, 4]], block_size=2)) == [[1, 2], [3, 4]]
    assert list(pack_token_stream([], block_size=3)) == []


def test_collator_masks_padding_by_length_even_when_pad_equals_eos():
    collate = BlockCollator(pad_token_id=0)
    batch = collate([{"input_ids": [5, 0, 7, 8]}, {"input_ids": [9, 0]}])  # 0 is also a real token here
    assert batch["input_ids"].tolist() == [[5, 0, 7, 8], [9, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["labels"].tolist() == [[5, 0, 7, 8], [9, 0, -100, -100]]


def _tokenizer():
    return tiny_tokenizer(FAMILIES["llama"])


def test_prepared_blocks_are_the_tokenized_corpus_with_eos():
    tokenizer = _tokenizer()
    cfg = DataConfig(train=[{"name": "tinytext", "options": {"num_documents": 50}}], max_length=32)
    data = prepare_pretrain_data(cfg, tokenizer, seed=0, max_steps=-1)
    expected = []
    for index in range(50):
        expected += tokenizer(corpus.document(0, "train", index), add_special_tokens=False)["input_ids"]
        expected.append(tokenizer.eos_token_id)
    blocks = data.train["input_ids"]
    assert [t for b in blocks for t in b] == expected
    assert all(len(b) == 32 for b in blocks[:-1])
    assert data.stats["train_tokens"] == len(expected)


def test_cache_is_reused_and_keyed_by_settings():
    tokenizer = _tokenizer()
    cfg = DataConfig(train=[{"name": "tinytext", "options": {"num_documents": 30}}], max_length=32)
    first = prepare_pretrain_data(cfg, tokenizer, seed=0, max_steps=-1)
    again = prepare_pretrain_data(cfg, tokenizer, seed=0, max_steps=-1)
    assert first.fingerprints["prepared"] == again.fingerprints["prepared"]
    assert again.train.cache_files[0]["filename"] == first.train.cache_files[0]["filename"]
    longer = prepare_pretrain_data(cfg.model_copy(update={"max_length": 48}), tokenizer, seed=0, max_steps=-1)
    assert longer.fingerprints["prepared"] != first.fingerprints["prepared"]


def test_streaming_yields_the_same_blocks_as_the_cache():
    tokenizer = _tokenizer()
    cached = DataConfig(train=[{"name": "tinytext", "options": {"num_documents": 40}}], max_length=32)
    streamed = cached.model_copy(update={"streaming": True})
    a = prepare_pretrain_data(cached, tokenizer, seed=0, max_steps=-1).train["input_ids"]
    b = [row["input_ids"] for row in prepare_pretrain_data(streamed, tokenizer, seed=0, max_steps=10).train]
    assert a == b


def test_eval_fraction_holds_out_documents():
    tokenizer = _tokenizer()
    cfg = DataConfig(train=[{"name": "tinytext", "options": {"num_documents": 100}}], max_length=32,
                     eval_fraction=0.2)
    data = prepare_pretrain_data(cfg, tokenizer, seed=0, max_steps=-1)
    eval_tokens = sum(len(b) for b in data.eval["input_ids"])
    train_tokens = sum(len(b) for b in data.train["input_ids"])
    assert 0.1 < eval_tokens / (eval_tokens + train_tokens) < 0.3


def test_collated_blocks_feed_a_model():
    from llmforge.config.schema import ModelConfig
    from llmforge.registry import load_model

    loaded = load_model(ModelConfig(name="tiny-llama"))
    batch = BlockCollator(loaded.tokenizer.pad_token_id)([{"input_ids": [1, 2, 3]}, {"input_ids": [4]}])
    assert torch.isfinite(loaded.model(**batch).loss)


def test_unpacked_rows_hold_one_document_each_and_lose_nothing():
    from llmforge.data.packing import split_documents

    docs = [[1, 2, 3, 4, 5], [6], [7, 8]]
    assert list(split_documents(docs, block_size=2)) == [[1, 2], [3, 4], [5], [6], [7, 8]]


def test_prepared_unpacked_rows_end_with_eos_per_document():
    tokenizer = _tokenizer()
    cfg = DataConfig(train=[{"name": "tinytext", "options": {"num_documents": 20}}], max_length=512,
                     packing=False)
    rows = prepare_pretrain_data(cfg, tokenizer, seed=0, max_steps=-1).train["input_ids"]
    expected = [tokenizer(corpus.document(0, "train", i), add_special_tokens=False)["input_ids"]
                + [tokenizer.eos_token_id] for i in range(20)]
    assert rows == expected
