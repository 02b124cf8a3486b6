"""Pieces several stages share: lineage records and model summaries."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmforge.config.schema import RunConfig
from llmforge.distributed.state import process_state
from llmforge.engine.files import publish_dir
from llmforge.registry import LoadedModel, ModelSource, count_parameters
from llmforge.registry.runs import read_run_info

log = logging.getLogger("llmforge")


def parent_of(source: ModelSource) -> dict[str, Any]:
    """How run.json names the model a run started from (a previous run by path and fingerprint)."""
    parent: dict[str, Any] = {"role": "model", "kind": source.kind, "name": source.name,
                              "location": source.location}
    if source.run_dir is not None:
        info = read_run_info(source.run_dir)
        parent.update(run_dir=str(source.run_dir.resolve()), stage=info.get("stage"),
                      fingerprint=info.get("final_fingerprint"))
    return parent


def model_summary(loaded: LoadedModel, trained: Any = None) -> dict[str, Any]:
    """Family, size and dtype; parameter counts are of `trained` (the model after any adapter)."""
    trainable, total = count_parameters(trained if trained is not None else loaded.model)
    return {"family": loaded.family.name, "model_type": loaded.model.config.model_type,
            "parameters": total, "trainable_parameters": trainable, "dtype": str(loaded.model.dtype)}


ADAPTER_TYPES = ("lora", "dora", "qlora")


def prepare_adapter_base(cfg: RunConfig, loaded: LoadedModel) -> str | None:
    """Where an adapter run's base weights live, so its final/ adapter folder can be loaded again.

    A hub model or a folder is named as it is; a base that exists nowhere on disk (a preset
    built from scratch, an adapter merged on load) is saved once to output_dir/base.
    """
    if cfg.adapter.type not in ADAPTER_TYPES:
        return None
    if loaded.reloadable_from:
        return loaded.reloadable_from
    base = Path(cfg.output_dir) / "base"
    if process_state().is_main_process and not (base / "config.json").is_file():
        staging = Path(cfg.output_dir) / ".base-staging"
        loaded.model.save_pretrained(staging, safe_serialization=True)
        loaded.tokenizer.save_pretrained(staging)
        publish_dir(staging, base)
    process_state().wait_for_everyone()
    return str(base.resolve())


def accuracy_eval(items: list[dict[str, Any]]) -> Callable[[Path], dict[str, float]]:
    """Exact-match accuracy of the published model on held-out prompts with verifiable answers."""

    def evaluate(final: Path) -> dict[str, float]:
        from llmforge.inference import exact_match, load_for_inference

        result = exact_match(load_for_inference(str(final)), items)
        for sample in result["samples"]:
            log.info("sample: %r -> %r (answer %s)", sample["prompt"], sample["completion"], sample["answer"])
        return {"eval_accuracy": result["accuracy"]}

    return evaluate
