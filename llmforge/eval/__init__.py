"""`llmforge eval`: score any model on any data source, the way the stages score themselves.

prompt rows with an `answer` -> exact-match accuracy from greedy generation;
text rows -> loss and perplexity over every token; conversations (alpaca, sharegpt,
messages) -> loss and perplexity over the assistant tokens.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from llmforge.config.schema import DataSource
from llmforge.data.chat import IGNORE, encode_row
from llmforge.data.formats import graded_prompts
from llmforge.data.sources import load_source
from llmforge.errors import UserError
from llmforge.inference import exact_match, load_for_inference


def evaluate(model_name: str, source: DataSource, max_length: int = 1024, batch_size: int = 16) -> dict[str, Any]:
    loaded = load_for_inference(model_name)
    data = load_source(source)
    if len(data.rows) == 0:
        raise UserError(f"{data.label} has no rows.")
    if data.format == "prompt":
        items = graded_prompts(data.rows, data.label)
        return {"eval_accuracy": exact_match(loaded, items)["accuracy"], "samples": len(items)}
    if data.format == "preference":
        raise UserError("preference rows are scored by a reward model, which arrives with the rm stage.")
    encoded = [e for i, row in enumerate(data.rows) if (e := encode_row(loaded.tokenizer, row, data.format,
                                                                        data.label, i))]
    loss = _mean_loss(loaded.model, [(e.input_ids[:max_length], e.labels[:max_length]) for e in encoded],
                      loaded.tokenizer.pad_token_id, batch_size)
    return {"eval_loss": loss, "eval_perplexity": math.exp(min(loss, 700)), "samples": len(encoded)}


@torch.no_grad()
def _mean_loss(model: Any, rows: list[tuple[list[int], list[int]]], pad: int, batch_size: int) -> float:
    """Token-weighted mean next-token loss over the labelled tokens."""
    total, count = 0.0, 0
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), pad)
        labels = torch.full((len(batch), width), IGNORE)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (row_ids, row_labels) in enumerate(batch):
            ids[i, :len(row_ids)], labels[i, :len(row_labels)], mask[i, :len(row_ids)] = (
                torch.tensor(row_ids), torch.tensor(row_labels), 1)
        device = model.device
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits.float()
        targets = labels[:, 1:].to(device)
        losses = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), targets, ignore_index=IGNORE,
                                                   reduction="sum")
        total += losses.item()
        count += int((targets != IGNORE).sum())
    if count == 0:
        raise UserError("no tokens to score: every row was empty or had no assistant answer.")
    return total / count
