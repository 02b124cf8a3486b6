"""Stage registry: `STAGES[cfg.stage]` builds that stage's parts."""

from llmforge.stages.base import Stage, StageParts
from llmforge.stages.pretrain import PretrainStage

STAGES: dict[str, Stage] = {stage.name: stage for stage in (PretrainStage(),)}

__all__ = ["STAGES", "Stage", "StageParts"]
