"""Concatenate documents (each ending in EOS) and cut the stream into fixed blocks.

The same generator serves the cached dataset and streaming mode, so both produce the
same blocks. No token is dropped: the last, shorter block is kept and padded by the
collator, with its padding masked out of the loss.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch


def pack_token_stream(documents: Iterable[list[int]], block_size: int) -> Iterator[list[int]]:
    buffer: list[int] = []
    for ids in documents:
        buffer.extend(ids)
        if len(buffer) >= block_size:
            full = len(buffer) - len(buffer) % block_size
            for start in range(0, full, block_size):
                yield buffer[start : start + block_size]
            buffer = buffer[full:]
    if buffer:
        yield buffer


def split_documents(documents: Iterable[list[int]], block_size: int) -> Iterator[list[int]]:
    """Unpacked: one document per row; a long one is cut into several rows, never mixed with another."""
    for ids in documents:
        for start in range(0, len(ids), block_size):
            yield ids[start : start + block_size]


def pack_rows(rows: Iterable[dict], block_size: int, packing: bool = True) -> Iterator[dict]:
    """Rows with an `input_ids` column -> rows of at most `block_size` tokens (packed or one doc each)."""
    shape = pack_token_stream if packing else split_documents
    for block in shape((row["input_ids"] for row in rows), block_size):
        yield {"input_ids": block}


class BlockCollator:
    """Right-pad a batch of blocks; padding gets attention 0 and label -100 (masked by length, not id)."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(row["input_ids"]) for row in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids = torch.as_tensor(row["input_ids"], dtype=torch.long)
            input_ids[i, : len(ids)] = ids
            attention_mask[i, : len(ids)] = 1
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
