"""The stages, one module each, every one declaring itself as a `SPEC` (config/stages.py's StageSpec).

Adding a stage is one module and one line: write `llmforge/stages/NAME.py` with its options section (a
pydantic model), its `build(cfg) -> StageParts` (or `produce(cfg, staging, work)` for a stage whose
output is a dataset or a report) and `SPEC = StageSpec(...)`, then list it in pyproject.toml under
`[project.entry-points."llmforge.stages"]`. The schema, `llmforge config`, the recipe reference, the
pipeline's evaluation and report pick it up from the declaration (docs/adding-a-stage.md).
"""

from __future__ import annotations

from llmforge.config.schema import RunConfig
from llmforge.config.stages import spec_for
from llmforge.engine.runner import RunOutcome, run_stage


def run(cfg: RunConfig) -> RunOutcome:
    """Run the stage a recipe names (what `llmforge train` does in one process)."""
    return run_stage(cfg, spec_for(cfg.stage))
