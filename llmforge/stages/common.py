"""Pieces several stages share: lineage records and model summaries (imported inside them, see stages/__init__)."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmforge.config.schema import ADAPTER_TYPES, RunConfig

if TYPE_CHECKING:
    from llmforge.registry import LoadedModel, ModelSource

log = logging.getLogger("llmforge")


def parent_of(source: ModelSource) -> dict[str, Any]:
    """How run.json names the model a run started from (a previous run by path and fingerprint)."""
    from llmforge.registry.runs import read_run_info

    parent: dict[str, Any] = {"role": "model", "kind": source.kind, "name": source.name,
                              "location": source.location}
    if source.run_dir is not None:
        info = read_run_info(source.run_dir)
        parent.update(run_dir=str(source.run_dir.resolve()), stage=info.get("stage"),
                      fingerprint=info.get("final_fingerprint"))
    return parent


def model_summary(loaded: LoadedModel, trained: Any = None) -> dict[str, Any]:
    """Family, size and dtype; parameter counts are of `trained` (the model after any adapter)."""
    from llmforge.registry import count_parameters

    trainable, total = count_parameters(trained if trained is not None else loaded.model)
    return {"family": loaded.family.name, "model_type": loaded.model.config.model_type,
            "parameters": total, "trainable_parameters": trainable, "dtype": str(loaded.model.dtype)}


def trainer_adapter(cfg: RunConfig, loaded: LoadedModel) -> tuple[dict[str, Any], dict[str, Any]]:
    """`adapter.*` for TRL trainers that wrap the model themselves, so a LoRA run's reference is the base
    with adapters off. Returns (trainer kwargs: the peft config, if any; the model summary).

    none/freeze are applied here, in place; LoRA's trainable count is TRL's to decide, so it is left out.
    """
    from llmforge.engine.adapters import apply_adapter, lora_config

    if cfg.adapter.type not in ADAPTER_TYPES:
        apply_adapter(loaded.model, cfg.adapter, loaded.family)
        return {}, {**model_summary(loaded), "adapter": cfg.adapter.type}
    summary = {**model_summary(loaded), "adapter": cfg.adapter.type}
    summary.pop("trainable_parameters")
    return {"peft_config": lora_config(loaded.model, cfg.adapter, loaded.family)}, summary




def anchor_start(cfg: RunConfig, loaded: LoadedModel, needed: bool | None = None) -> str | None:
    """Make the starting weights loadable again by name, and name them on the model.

    Adapter folders record their base by this name, and TRL builds reference models
    from it. A hub model or folder is named as it is; weights that exist nowhere on disk
    (a preset built from scratch, an adapter merged on load, a new score head) are saved once
    to output_dir/base. `needed` defaults to "the run trains an adapter".
    """
    from llmforge.distributed.state import process_state
    from llmforge.engine.files import publish_dir

    if not (cfg.adapter.type in ADAPTER_TYPES if needed is None else needed):
        return None
    location = loaded.reloadable_from
    if not location:
        base = Path(cfg.output_dir) / "base"
        if process_state().is_main_process and not (base / "config.json").is_file():
            staging = Path(cfg.output_dir) / ".base-staging"
            save_base(staging, loaded)
            publish_dir(staging, base)
        process_state().wait_for_everyone()
        location = str(base.resolve())
    loaded.model.name_or_path = location  # what peft records as base_model_name_or_path
    loaded.model.config.name_or_path = location
    return location


WEIGHT_FILES = ("*.safetensors", "model.safetensors.index.json")


def save_base(folder: Path, loaded: LoadedModel) -> None:
    """The start of an adapter run as a folder of its own. When its weights already lie in a local folder
    (an SFT run's final/ under a reward model's new head), they are hard-linked there (copied across file
    systems) and only the config, which records the head, is new."""
    from llmforge.registry.folders import save_model_folder

    source = Path(loaded.weights_from) if loaded.weights_from else None
    files = [f for pattern in WEIGHT_FILES for f in source.glob(pattern)] if source and source.is_dir() else []
    if not files:
        save_model_folder(folder, loaded.model, loaded.tokenizer, loaded.family)
        return
    folder.mkdir(parents=True, exist_ok=True)
    loaded.model.config.architectures = [type(loaded.model).__name__]
    loaded.model.config.save_pretrained(str(folder))
    loaded.tokenizer.save_pretrained(str(folder))
    for file in files:
        try:
            os.link(file, folder / file.name)
        except OSError:
            shutil.copy2(file, folder / file.name)


def chunked_by_trl(cfg: RunConfig) -> None:
    """A TRL trainer that always computes its log-probs through the chunked head cannot honour
    `train.chunked_loss: false` (a `check` of dpo, kto and grpo)."""
    if not cfg.train.chunked_loss:
        raise ValueError(f"train.chunked_loss=false is not offered for stage {cfg.stage}: TRL's trainer always "
                         "computes its log-probs in chunks (it never holds the whole logits); leave it true")


def capped_eval(data: Any, cfg: RunConfig) -> Any:
    """The held-out set, cut to `eval.max_samples` rows when set."""
    if data is None or not cfg.eval.max_samples:
        return data
    return data.select(range(min(cfg.eval.max_samples, len(data))))


def accuracy_eval(items: list[dict[str, Any]]) -> Callable[[Path], dict[str, float]]:
    """Exact-match accuracy of the published model on held-out prompts with verifiable answers."""

    def evaluate(final: Path) -> dict[str, float]:
        from llmforge.eval.exact_match import exact_match
        from llmforge.inference import load_for_inference

        result = exact_match(load_for_inference(str(final)), items)
        for sample in result["samples"]:
            log.info("sample: %r -> %r (answer %s)", sample["prompt"], sample["completion"], sample["answer"])
        return {"eval_accuracy": result["accuracy"]}

    return evaluate


def held_out_curve(cfg: RunConfig, loaded: LoadedModel, items: list[dict[str, Any]]) -> list[Any]:
    """Exact match on the held-out prompts every eval.every_steps during training (in metrics.jsonl and the
    report's curves), for stages trained by TRL's trainers; none when the recipe sets no interval."""
    if not items or not cfg.eval.every_steps:
        return []
    from llmforge.inference import stops_of
    from llmforge.rl.evaluation import HeldOutAccuracy

    return [HeldOutAccuracy(items, loaded.tokenizer, stops_of(loaded), cfg.eval.every_steps)]


def load_side_model(cfg: RunConfig, name: str) -> LoadedModel:
    """A one-score model (reward or value) named like model.name, loaded with the run's dtype and trust settings."""
    from transformers import AutoModelForSequenceClassification

    from llmforge.registry import load_model

    return load_model(cfg.model.for_other(name), AutoModelForSequenceClassification, num_labels=1)
