"""Data before training: read sources, normalise, filter, deduplicate (exactly and near), decontaminate
against test sets and split, into a dataset folder later stages read as `{path: ${curate.output}}`.

The output is final/ with `train/` (and `validation/`, `test/` when split) parquet shards and
`manifest.json`: rows in and out, what each step removed with examples, malformed rows with their row
numbers, and which test rows were found in the training data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmforge.config.schema import RunConfig
from llmforge.config.stages import StageSpec
from llmforge.curate.options import CurateOptions


def produce(cfg: RunConfig, staging: Path, work: Path) -> dict[str, Any]:
    from llmforge.curate.run import curate

    return curate(cfg, cfg.curate, staging)


SPEC = StageSpec(
    name="curate",
    order=5,
    summary="clean a dataset: normalise, filter, deduplicate (exact and MinHash near-duplicates), decontaminate "
            "against test sets, split; writes parquet shards and a manifest",
    options=CurateOptions,
    uses=("data.train",),
    formats=("text", "alpaca", "sharegpt", "messages", "preference", "prompt"),
    produce=produce,
    output="dataset",
    headline=("rows_in", "rows_out", "contaminated_test_rows"),
    samples="none",
)
