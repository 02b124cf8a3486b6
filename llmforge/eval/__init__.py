"""`llmforge eval`: score any model on any data source, the way the stages score themselves.

prompt rows with an `answer` -> exact-match accuracy from greedy generation (and pass@k from samples);
text rows -> loss and perplexity over every token; conversations (alpaca, sharegpt,
messages) -> loss and perplexity over the assistant tokens; preference rows -> the
model is a reward model: pair accuracy and margin. With a baseline and a judge, prompt
(or preference) rows -> win-rate of the model against the baseline.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import torch

from llmforge.config.schema import DataSource
from llmforge.data.chat import IGNORE, encode_row
from llmforge.data.formats import graded_prompts, to_prompt
from llmforge.data.pairs import skip_reason, to_pair
from llmforge.data.preference import encode_pair
from llmforge.data.sources import LoadedSource, load_source
from llmforge.errors import UserError
from llmforge.eval.compare import compare
from llmforge.eval.exact_match import exact_match
from llmforge.eval.reward_model import load_reward_model, pair_metrics, score_ids
from llmforge.inference import load_for_inference


def evaluate(model_name: str, source: DataSource, max_length: int = 1024, batch_size: int = 16,
             baseline: str | None = None, judge: str | None = None, pass_at: list[int] | None = None,
             temperature: float = 1.0) -> dict[str, Any]:
    data = load_source(source)
    if len(data.rows) == 0:
        raise UserError(f"{data.label} has no rows.")
    if pass_at and (data.format != "prompt" or baseline or judge):
        raise UserError(f"{data.label}: pass@k samples one model's answers to prompts: give prompt rows with an "
                        f"`answer` and no --against/--judge, not '{data.format}' rows"
                        + (" with a baseline." if baseline or judge else "."))
    if baseline or judge:
        if not (baseline and judge):
            raise UserError("a win-rate needs both --against (the baseline model) and --judge (a reward model).")
        return compare(model_name, baseline, judge, prompt_items(data))
    if data.format == "preference":
        return score_pairs(model_name, data, max_length, batch_size)
    loaded = load_for_inference(model_name)
    if data.format == "prompt":
        items = graded_prompts(data.rows, data.label)
        if pass_at:
            from llmforge.eval.pass_at_k import sampled_pass_at_k

            return sampled_pass_at_k(loaded, items, pass_at, temperature)
        return {"eval_accuracy": exact_match(loaded, items)["accuracy"], "samples": len(items)}
    encoded = [e for i, row in enumerate(data.rows) if (e := encode_row(loaded.tokenizer, row, data.format,
                                                                        data.label, i))]
    loss = _mean_loss(loaded.model, [(e.input_ids[:max_length], e.labels[:max_length]) for e in encoded],
                      loaded.tokenizer.pad_token_id, batch_size)
    return {"eval_loss": loss, "eval_perplexity": math.exp(min(loss, 700)), "samples": len(encoded)}


def prompt_items(data: LoadedSource) -> list[dict[str, Any]]:
    """Prompt or preference rows as {"messages": prompt, "answer": str | None}, for generation."""
    if data.format == "prompt":
        return [{"messages": to_prompt(row, data.label, i),
                 "answer": None if row.get("answer") is None else str(row["answer"])}
                for i, row in enumerate(data.rows)]
    if data.format == "preference":
        return [{"messages": to_pair(row, data.label, i).prompt, "answer": None} for i, row in enumerate(data.rows)]
    raise UserError(f"{data.label}: a win-rate is measured on prompts: give prompt or preference rows, "
                    f"not '{data.format}'.")


def score_pairs(model_name: str, data: LoadedSource, max_length: int, batch_size: int) -> dict[str, Any]:
    """The model as a reward model: how often it ranks chosen above rejected (pairs that teach nothing skipped)."""
    rm = load_reward_model(model_name)
    chosen, rejected, skipped = [], [], Counter()
    for index, row in enumerate(data.rows):
        pair = to_pair(row, data.label, index)
        if reason := skip_reason(row, pair):
            skipped[reason] += 1
            continue
        prompt, good, bad = encode_pair(rm.tokenizer, pair)
        chosen.append((prompt + good)[:max_length])
        rejected.append((prompt + bad)[:max_length])
    if not chosen:
        raise UserError(f"{data.label}: no usable preference pairs ({dict(skipped)}).")
    pad = rm.tokenizer.pad_token_id
    metrics = pair_metrics(score_ids(rm.model, pad, chosen, batch_size), score_ids(rm.model, pad, rejected, batch_size))
    return {**metrics, "pairs": len(chosen), "skipped": dict(skipped)}


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
