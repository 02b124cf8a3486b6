"""The stages, one module each, every one declaring itself as a `SPEC` (config/stages.py's StageSpec).

Adding a stage is one module and one line: write `llmforge/stages/NAME.py` with its options section (a
pydantic model), its `build(cfg) -> StageParts` (or `produce(cfg, staging, work)` for a stage whose
output is a dataset or a report) and `SPEC = StageSpec(...)`, then list it in pyproject.toml under
`[project.entry-points."llmforge.stages"]`. The schema, `llmforge config`, the recipe reference, the
pipeline's evaluation and report pick it up from the declaration (docs/adding-a-stage.md).

Validating any recipe reads every stage's declaration, so a stage module imports only declarations at its
top (config, pydantic, constants) and its trainers, models and data code inside `build`/`produce`: a typo is
then reported in under a second instead of after importing TRL, peft and torch for all eight stages
(tests/config/test_stages.py holds them to it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmforge.config.schema import RunConfig
from llmforge.config.stages import spec_for

if TYPE_CHECKING:
    from llmforge.engine.runner import RunOutcome


def run(cfg: RunConfig) -> RunOutcome:
    """Run the stage a recipe names (what `llmforge train` does in one process)."""
    from llmforge.engine.runner import run_stage

    return run_stage(cfg, spec_for(cfg.stage))
