"""Stage registry: `STAGES[cfg.stage]` builds that stage's parts."""

from llmforge.stages.base import Stage, StageParts
from llmforge.stages.dpo import DPOStage
from llmforge.stages.grpo import GRPOStage
from llmforge.stages.kto import KTOStage
from llmforge.stages.ppo import PPOStage
from llmforge.stages.pretrain import PretrainStage
from llmforge.stages.reward import RewardStage
from llmforge.stages.sft import SFTStage

STAGES: dict[str, Stage] = {
    stage.name: stage for stage in (PretrainStage(), SFTStage(), RewardStage(), DPOStage(), KTOStage(),
                                                     GRPOStage(), PPOStage())
}

__all__ = ["STAGES", "Stage", "StageParts"]
