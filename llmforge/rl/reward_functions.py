"""Reward functions: the built-in verifiable ones, your own by path or module, and a remote scoring service.

`*.reward_functions` in a recipe takes, each:
- a built-in name (`arithmetic`, `final_number`);
- `path/to/file.py:function` or `package.module:function`: your own code, imported only because the recipe
  names it (llmforge never runs code a recipe does not name);
- `http://host:port/path` (or https): a service that receives the batch as JSON and answers a list of floats.

A function is called with keyword lists: `prompts` (the conversations), `completions` (the generated texts)
and every other column of the prompt rows (e.g. `answer`); it returns one float per completion, or None to
leave that completion out of this source. Its signature is checked when the recipe loads; an exception, a
wrong length or a non-number at run time stops the run with a message naming it. This registry knows no
dataset: the columns a function reads are whatever the prompt rows carry.
"""

from __future__ import annotations

import inspect
import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmforge.errors import UserError
from llmforge.user_code import import_function


def completion_text(completion: Any) -> str:
    """A completion as text, whether plain or a list of chat messages."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return str(completion)


def arithmetic(completions: list[Any], answer: list[str | None], **_: Any) -> list[float]:
    """1.0 when the completion's first integer is the answer, else 0.0."""
    # imported here: the eval package imports torch, and recipes naming this function load without it
    from llmforge.eval.answers import is_correct

    return [float(is_correct(completion_text(c), a)) for c, a in zip(completions, answer, strict=True)]


def final_number(completions: list[Any], answer: list[str | None], **_: Any) -> list[float]:
    """1.0 when the completion's last number is the answer's (GSM8K style: the answer may end '#### 42')."""
    from llmforge.eval.answers import last_number

    truths = [last_number(str(a).split("####")[-1]) for a in answer]
    return [float(t is not None and last_number(completion_text(c)) == t) for c, t in zip(completions, truths,
                                                                                           strict=True)]


REWARD_FUNCTIONS: dict[str, Callable[..., list[float]]] = {"arithmetic": arithmetic, "final_number": final_number}
PASSED = ("prompts", "completions")  # what every function receives besides the prompt rows' columns


@dataclass
class RewardSource:
    """One named source of rewards, called the same way whatever it is."""

    name: str  # as the recipe wrote it; logs say rewards/<label>
    label: str
    call: Callable[..., list[float | None]]
    needs: tuple[str, ...] = ()  # columns it requires (parameters without defaults)
    timeout: float = 30.0
    retries: int = 2
    extra: dict[str, Any] = field(default_factory=dict)

    def __call__(self, prompts: list[Any], completions: list[str], columns: dict[str, list[Any]]
                 ) -> list[float | None]:
        missing = [c for c in self.needs if c not in columns]
        if missing:
            raise UserError(f"reward function '{self.name}' needs the column(s) {', '.join(missing)}, which the "
                            f"prompt rows do not have (they have: {', '.join(columns) or 'none'}).")
        try:
            values = self.call(prompts=prompts, completions=completions, **columns)
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"reward function '{self.name}' failed: {type(exc).__name__}: {exc}") from None
        return checked(self.name, values, len(completions))


def checked(name: str, values: Any, expected: int) -> list[float | None]:
    """One finite float (or None) per completion, or a UserError naming the source."""
    if not isinstance(values, (list, tuple)) or len(values) != expected:
        got = f"{len(values)} values" if isinstance(values, (list, tuple)) else type(values).__name__
        raise UserError(f"reward function '{name}' returned {got} for {expected} completions; return one float "
                        "(or None) per completion.")
    for value in values:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise UserError(f"reward function '{name}' returned {value!r}; rewards are finite numbers or None.")
    return [None if v is None else float(v) for v in values]


def _needs(name: str, function: Callable[..., Any]) -> tuple[str, ...]:
    """The columns a function requires; an error when it could not receive the completions."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return ()
    keywords = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    named = {p.name: p for p in parameters if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                         inspect.Parameter.KEYWORD_ONLY)}
    if "completions" not in named and not keywords:
        raise UserError(f"reward function '{name}' must accept the keyword argument `completions` (its signature: "
                        f"{inspect.signature(function)}); write def {function.__name__}(prompts, completions, "
                        "**columns).")
    if "prompts" not in named and not keywords:
        raise UserError(f"reward function '{name}' must accept `prompts` (or **kwargs) besides `completions`.")
    return tuple(p.name for p in named.values() if p.default is inspect.Parameter.empty and p.name not in PASSED)


def remote(url: str, timeout: float, retries: int) -> Callable[..., list[float | None]]:
    """A scoring service: POST {"prompts", "completions", columns...} as JSON, read a list of floats (or
    {"rewards": [...]}). Retried `retries` times with a short back-off; a service that does not answer is a
    user error after that, never a hang."""

    def call(prompts: list[Any], completions: list[str], **columns: Any) -> list[float | None]:
        body = json.dumps({"prompts": prompts, "completions": completions, **columns}, default=str).encode()
        last: Exception | None = None
        for attempt in range(retries + 1):
            request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    answer = json.loads(response.read().decode())
                return answer["rewards"] if isinstance(answer, dict) and "rewards" in answer else answer
            except (urllib.error.URLError, TimeoutError, ConnectionError, ValueError, OSError) as exc:
                last = exc
                time.sleep(min(0.5 * 2**attempt, 5.0))
        reason = getattr(last, "reason", last)
        raise UserError(f"reward service {url} did not answer after {retries + 1} tries ({reason}); check that it "
                        "runs and is reachable, or raise reward_timeout / reward_retries.")

    return call


def resolve(name: str, timeout: float = 30.0, retries: int = 2) -> RewardSource:
    """A recipe's reward-function entry as a callable source (importing user code it names)."""
    if name in REWARD_FUNCTIONS:
        return RewardSource(name, name, REWARD_FUNCTIONS[name], _needs(name, REWARD_FUNCTIONS[name]))
    if name.startswith(("http://", "https://")):
        label = name.split("://", 1)[1].split("/", 1)[0]
        return RewardSource(name, f"url:{label}", remote(name, timeout, retries), timeout=timeout, retries=retries)
    if ":" in name:
        function = import_function(name)
        return RewardSource(name, name.rpartition(":")[2], function, _needs(name, function))
    close = [known for known in REWARD_FUNCTIONS if known[:3] == name[:3]]
    raise UserError(f"reward function '{name}' is not built in ({', '.join(REWARD_FUNCTIONS)}"
                    + (f"; did you mean '{close[0]}'?" if close else "")
                    + "); name your own as path/to/file.py:function, package.module:function or http://host/path.")
