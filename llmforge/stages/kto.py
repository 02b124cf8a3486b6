"""Kahneman-Tversky optimisation through TRL's KTOTrainer: learns from answers marked good or bad one by one.

Unlike DPO it needs no pairs, only a verdict per answer; preference pairs are unpaired
(chosen -> desirable, rejected -> undesirable) so every preference dataset llmforge reads
works here too. Reference model, LoRA handling and evaluation are DPO's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from llmforge.config.schema import RunConfig
from llmforge.config.stages import StageSpec
from llmforge.stages.dpo import ReferenceOptions, offline_preference_parts, offline_preference_spec

if TYPE_CHECKING:
    from datasets import Dataset

    from llmforge.engine.parts import StageParts


class KTOOptions(ReferenceOptions):
    loss_type: Literal["kto", "apo_zero_unpaired"] = Field("kto", description="TRL KTO loss: kto, apo_zero_unpaired")
    desirable_weight: float = Field(
        1.0, gt=0.0, description="loss weight of desirable (chosen) answers; raise it when they are fewer")
    undesirable_weight: float = Field(1.0, gt=0.0, description="loss weight of undesirable (rejected) answers")


def build(cfg: RunConfig) -> StageParts:
    from trl import KTOConfig, KTOTrainer

    options = cfg.kto
    args = {"beta": options.beta, "loss_type": options.loss_type, "desirable_weight": options.desirable_weight,
            "undesirable_weight": options.undesirable_weight, "precompute_ref_log_probs": options.precompute_ref}
    return offline_preference_parts(cfg, options.ref_model, KTOTrainer, KTOConfig, args,
                                    lambda pairs: unpaired(pairs, cfg.seed))


def unpaired(pairs: Dataset, seed: int) -> Dataset:
    """One row per answer, shuffled: TRL unpairs in blocks (a thousand chosen rows, then their rejected ones)
    and KTOConfig reads rows in order (train_sampling_strategy: sequential, TRL's default for KTO), so
    unshuffled the first batches would hold only desirable answers and the next only undesirable ones."""
    from trl.data_utils import unpair_preference_dataset

    return unpair_preference_dataset(pairs).shuffle(seed=seed).flatten_indices()


SPEC = StageSpec(
    name="kto",
    order=50,
    summary="Kahneman-Tversky optimisation: answers judged good or bad one by one (TRL's KTOTrainer)",
    options=KTOOptions,
    build=build,
    headline=("eval_accuracy", "eval_rewards/chosen", "eval_rewards/rejected"),
    **offline_preference_spec(),
)
