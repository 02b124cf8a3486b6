"""Reward modelling through TRL's RewardTrainer: a one-score head, Bradley-Terry loss on pairs.

Any registry model gets a sequence-classification head (full or LoRA training; LoRA
keeps the head trainable and saves it with the adapters). The score is read at the last
token that is not padding, so the pad token is made distinct from EOS. Before final/ is
published, the trained model scores held-out (or training) pairs and their mean/std go
into final/reward_stats.json for the stages that normalise rewards.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from llmforge.config.schema import PAIR_FORMATS, RunConfig, Section
from llmforge.config.stages import Cost, Footprint, StageSpec
from llmforge.stages.common import anchor_start, capped_eval, model_summary, parent_of

if TYPE_CHECKING:
    from datasets import Dataset

    from llmforge.engine.parts import StageParts

log = logging.getLogger("llmforge")


def records_one_score_head(folder: str | None) -> bool:
    """Whether a local model folder's config describes a one-label sequence classifier."""
    config_file = Path(folder) / "config.json" if folder else None
    if config_file is None or not config_file.is_file():
        return False
    config = json.loads(config_file.read_text())
    one_label = len(config.get("id2label") or {}) == 1 or config.get("num_labels") == 1
    return one_label and any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or [])


def _full_sequences(pairs: Dataset, max_length: int) -> Dataset:
    """prompt + answer ids per side, cut to max_length (pairs kept under `truncation: truncate`)."""
    def join(row: dict[str, Any]) -> dict[str, Any]:
        return {"chosen_ids": (row["prompt_ids"] + row["chosen_ids"])[:max_length],
                "rejected_ids": (row["prompt_ids"] + row["rejected_ids"])[:max_length]}

    return pairs.map(join, remove_columns=pairs.column_names, desc="joining prompts and answers")


def reward_statistics(pairs: Dataset, samples: int) -> Any:
    """finalize hook: score pairs with the saved model; write their mean/std beside it."""

    def finalize(staging: Path) -> dict[str, float]:
        import torch

        from llmforge.eval.reward_model import (
            STATS_FILE,
            load_reward_model,
            pair_metrics,
            score_ids,
            stats_of,
        )

        rm = load_reward_model(str(staging))
        subset = pairs.select(range(min(samples, len(pairs))))
        chosen = score_ids(rm.model, rm.tokenizer.pad_token_id, subset["chosen_ids"])
        rejected = score_ids(rm.model, rm.tokenizer.pad_token_id, subset["rejected_ids"])
        stats = stats_of(torch.cat([chosen, rejected]))
        (staging / STATS_FILE).write_text(json.dumps(stats, indent=2))
        metrics = {f"reward_{key}": value for key, value in stats.items() if key != "count"}
        metrics.update({f"final_{k.removeprefix('eval_')}": v for k, v in pair_metrics(chosen, rejected).items()})
        log.info("reward statistics over %d pairs: mean %.2f, standard deviation %.2f", len(subset), stats["mean"],
                 stats["std"])
        return metrics

    return finalize


class RMOptions(Section):
    center_rewards: float | None = Field(
        None, ge=0.0, description="weight of a penalty pulling mean reward to 0 (TRL center_rewards_coefficient)")
    stats_samples: int = Field(
        1000, ge=1, description="pairs scored after training for the mean/std saved in final/reward_stats.json")


def build(cfg: RunConfig) -> StageParts:
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from llmforge.data.preference import prepare_preference_data
    from llmforge.engine.adapters import apply_adapter, quantization_kwargs
    from llmforge.engine.parts import StageParts
    from llmforge.registry import load_model
    from llmforge.registry.tokenizer import ensure_distinct_pad

    loaded = load_model(cfg.model, AutoModelForSequenceClassification, num_labels=1,
                        **quantization_kwargs(cfg.adapter))
    if ensure_distinct_pad(loaded.model, loaded.tokenizer):
        loaded.reloadable_from = None  # the base on disk lacks the added pad token
    elif not records_one_score_head(loaded.reloadable_from):
        # a LoRA reward model's base must say "one score" where transformers and peft read it (its
        # config.json), or their loaders build a two-label head and fail on the adapter's one-score head
        loaded.weights_from, loaded.reloadable_from = loaded.reloadable_from, None
    anchor_start(cfg, loaded)
    model = apply_adapter(loaded.model, cfg.adapter, loaded.family, task_type="SEQ_CLS")
    data = prepare_preference_data(cfg.data, loaded.tokenizer, cfg.seed, "rm")
    train = _full_sequences(data.train, cfg.data.max_length)
    held_out = capped_eval(data.eval, cfg)
    held_out = _full_sequences(held_out, cfg.data.max_length) if held_out is not None else None
    args = {"max_length": None, "center_rewards_coefficient": cfg.rm.center_rewards, "disable_dropout": True,
            "dataset_num_proc": None}
    return StageParts(
        model=model,
        tokenizer=loaded.tokenizer,
        train_dataset=train,
        eval_dataset=held_out,
        trainer_class=RewardTrainer,
        args_class=RewardConfig,
        args_extra=args,
        parents=[parent_of(loaded.source)],
        data={"fingerprints": data.fingerprints, **data.stats},
        model_info={**model_summary(loaded, model), "adapter": cfg.adapter.type, "head": "score (1 label)"},
        layer_class=loaded.family.decoder_layer or None,
        finalize=reward_statistics(held_out if held_out is not None else train, cfg.rm.stats_samples),
        language_model=False,
    )


SPEC = StageSpec(
    name="rm",
    order=30,
    summary="reward model: a one-score head trained on preference pairs (Bradley-Terry)",
    uses=("adapter", "eval", "data.train", "data.eval", "data.eval_fraction", "data.max_length", "data.truncation",
          "data.cache_dir"),
    options=RMOptions,
    formats=PAIR_FORMATS,
    build=build,
    headline=("eval_accuracy", "eval_margin"),
    judges=True,
    samples="none",
    cost=Cost(efficiency=0.63, passes=2.0),
    footprint=lambda cfg: Footprint(sequences_per_row=2, vocab_loss=False, sequence_classifier=True,
                                    reloads_final="always"),
)
