"""Kahneman-Tversky optimisation through TRL's KTOTrainer: learns from answers marked good or bad one by one.

Unlike DPO it needs no pairs, only a verdict per answer; preference pairs are unpaired
(chosen -> desirable, rejected -> undesirable) so every preference dataset llmforge reads
works here too. Reference model, LoRA handling and evaluation are DPO's.
"""

from __future__ import annotations

from datasets import Dataset
from trl import KTOConfig, KTOTrainer
from trl.data_utils import unpair_preference_dataset

from llmforge.config.schema import RunConfig
from llmforge.stages.base import StageParts
from llmforge.stages.dpo import offline_preference_parts


class KTOStage:
    name = "kto"

    def build(self, cfg: RunConfig) -> StageParts:
        o = cfg.kto
        args = {"beta": o.beta, "loss_type": o.loss_type, "desirable_weight": o.desirable_weight,
                "undesirable_weight": o.undesirable_weight, "precompute_ref_log_probs": o.precompute_ref}
        return offline_preference_parts(cfg, o.ref_model, KTOTrainer, KTOConfig, args,
                                        lambda pairs: unpaired(pairs, cfg.seed))


def unpaired(pairs: Dataset, seed: int) -> Dataset:
    """One row per answer, shuffled: TRL unpairs in blocks (a thousand chosen rows, then their rejected ones)
    and KTOConfig reads rows in order (train_sampling_strategy: sequential, TRL's default for KTO), so
    unshuffled the first batches would hold only desirable answers and the next only undesirable ones."""
    return unpair_preference_dataset(pairs).shuffle(seed=seed).flatten_indices()
