"""Sizes as people write them (12GiB, 800MB, 8M, plain bytes), read once for every option that takes one."""

from __future__ import annotations

import re

from llmforge.errors import UserError

UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 2**10, "m": 1e6, "mb": 1e6, "mib": 2**20, "g": 1e9,
         "gb": 1e9, "gib": 2**30, "t": 1e12, "tb": 1e12, "tib": 2**40}


def parse_size(text: str, what: str) -> int:
    """Bytes in `text`; a UserError naming `what` (the option or variable) when it is not a size."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not match or match.group(2).lower() not in UNITS:
        raise UserError(f"{what}={text!r} is not a size: write bytes or a number with a unit, e.g. 12GiB or 800MB.")
    return int(float(match.group(1)) * UNITS[match.group(2).lower()])
