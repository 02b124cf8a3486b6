"""How variable-length SFT rows are batched, chosen per device from measurements.

- packed: padding-free rows (TRL's best-fit-decreasing packer): one flat row per batch, samples kept apart
  by their position ids. What its attention costs depends on the kernel: flash-attention's varlen kernel
  (GPU) pays per document; PyTorch SDPA on a CPU gets a dense block mask over the whole row and pays for
  the row squared.
- grouped: padded batches of rows of similar length (a seeded, length-sorted batch order fixed at data
  preparation, read in order), so padding is small and attention costs each row's length squared.
- padded: padded batches in a random order (the Trainer's sampler).

`data.packing: auto` takes, per device, the fastest correct choice measured with `llmforge bench --only
features` (SFT on variable-length chat rows of 10 to ~300 tokens, max_length 256, micro-batch 8):
- CPU: grouped. `llmforge bench --quick --only features` on a 2-core Xeon (AMX), float32: grouped 11,179
  tokens/s, packed 6,191 (0.54x), padded 6,932 (0.60x); on a 2-core AMD EPYC (two runs of grouped averaged)
  packed 0.46x, padded 0.65x, and 0.41x, 0.58x with torch held to AVX2 kernels. The trade: a grouped
  batch holds rows of one length, and on a small task of few templates that can mean one template per
  batch, so a tiny model's updates swing between them; set `packing: true` where the order of rows
  matters more than speed.
- CUDA with flash-attn installed: packed with flash_attention_2 (varlen, no padding, no cross-sample
  attention); without it grouped, as on CPU (SDPA's dense mask over a flat row grows with the square of
  the batch's tokens). Not yet measured on a GPU.
"""

from __future__ import annotations

import importlib.util
import random
from typing import Any

from llmforge.errors import UserError

CHOICES = ("packed", "grouped", "padded")
MEGA_BATCHES = 50  # rows are sorted by length within windows of this many batches, as transformers' sampler does


def sft_batching(packing: bool | str, attn_implementation: str, device: str) -> str:
    """The batching an SFT run uses for `data.packing` (true | false | grouped | auto)."""
    if packing is True:
        return "packed"
    if packing is False:
        return "padded"
    if packing == "grouped":
        return "grouped"
    if device == "cuda" and attn_implementation in ("auto", "flash_attention_2") and \
            importlib.util.find_spec("flash_attn") is not None:
        return "packed"
    return "grouped"


def attention_for(batching: str, attn_implementation: str, device: str) -> str:
    """The attention kernel a batching runs with under model.attn_implementation=auto."""
    if attn_implementation != "auto":
        return attn_implementation
    if batching == "packed" and device == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def grouped_order(lengths: list[int], batch_size: int, seed: int) -> list[int]:
    """Row indices such that each run of `batch_size` rows has similar lengths, batches in a seeded order.

    Rows are shuffled, sorted by length (longest first) within windows of MEGA_BATCHES batches, cut into
    batches, and the batches shuffled; the longest batch goes first so a run that runs out of memory does so
    at its first step."""
    if batch_size < 1:
        raise UserError("train.micro_batch_size must be at least 1.")
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * MEGA_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: -lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    if not batches:
        return []
    longest = max(range(len(batches)), key=lambda b: lengths[batches[b][0]])
    first = batches.pop(longest)
    rng.shuffle(batches)
    return [i for batch in [first, *batches] for i in batch]


def padded_tokens(lengths: list[int], order: list[int], batch_size: int) -> int:
    """Tokens a padded run computes over (each batch padded to its longest row): what grouping saves."""
    return sum(max(lengths[i] for i in order[s:s + batch_size]) * len(order[s:s + batch_size])
               for s in range(0, len(order), batch_size))


def trainer_arguments(batching: str) -> dict[str, Any]:
    """TRL SFTConfig arguments for a batching."""
    packed = batching == "packed"
    args = {"packing": packed, "packing_strategy": "bfd", "padding_free": packed, "eval_packing": packed}
    if batching == "grouped":
        args["train_sampling_strategy"] = "sequential"  # the prepared data is already in grouped order
    return args
