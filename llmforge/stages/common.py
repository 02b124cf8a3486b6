"""Pieces several stages share: lineage records and model summaries."""

from __future__ import annotations

from typing import Any

from llmforge.registry import LoadedModel, ModelSource, count_parameters
from llmforge.registry.runs import read_run_info


def parent_of(source: ModelSource) -> dict[str, Any]:
    """How run.json names the model a run started from (a previous run by path and fingerprint)."""
    parent: dict[str, Any] = {"role": "model", "kind": source.kind, "name": source.name,
                              "location": source.location}
    if source.run_dir is not None:
        info = read_run_info(source.run_dir)
        parent.update(run_dir=str(source.run_dir.resolve()), stage=info.get("stage"),
                      fingerprint=info.get("final_fingerprint"))
    return parent


def model_summary(loaded: LoadedModel) -> dict[str, Any]:
    trainable, total = count_parameters(loaded.model)
    return {"family": loaded.family.name, "model_type": loaded.model.config.model_type,
            "parameters": total, "trainable_parameters": trainable, "dtype": str(loaded.model.dtype)}
