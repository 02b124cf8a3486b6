"""One exception type for mistakes a user can fix.

The CLI turns a `UserError` into a one-paragraph message and exit code 2, without a
traceback; anything else is our bug and keeps its traceback (exit code 1).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A bad config, bad data, a missing file: something the user fixes, not us."""


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to `word`, or None when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean 'x'?' for the closest choice, or '' when none is close."""
    close = closest(word, choices)
    return f" Did you mean '{close}'?" if close else ""
