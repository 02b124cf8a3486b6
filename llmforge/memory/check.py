"""The check before a run starts: a recipe predicted not to fit stops with exit 2, saying why and what fits."""

from __future__ import annotations

import os

from llmforge.config.schema import RunConfig
from llmforge.errors import UserError
from llmforge.memory import Plan, plan


def refuse_unless_fits(cfg: RunConfig, force: bool = False) -> Plan | None:
    """The plan of `cfg`; a UserError naming the largest terms and the changes that fit when its predicted peak
    exceeds the device's free memory (or LLMFORGE_MEMORY_LIMIT), unless `force`. Checked once, on the first
    process: workers a launcher started were checked by it."""
    if force or os.environ.get("RANK", "0") != "0":
        return None
    planned = plan(cfg)
    if planned is None or planned.fits:
        return planned
    from llmforge.memory.advice import changes_that_fit
    from llmforge.memory.render import refusal

    raise UserError(refusal(cfg, planned, changes_that_fit(cfg, planned.budget, planned.estimate.device)))
