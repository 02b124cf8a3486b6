"""A pipeline's `require:` gates: conditions a stage's results must meet before its model is handed on.

    require:
      ppo: "accuracy >= sft.accuracy - 0.02"     # no worse than its start, within 0.02
      dpo: ["accuracy >= sft.accuracy", "kl < 2"]

A condition reads `METRIC OP VALUE`: METRIC is one of the gated stage's figures, VALUE a number or
another stage's figure (`STAGE.METRIC`), optionally plus or minus a number; OP is one of >= > <= < ==.
A figure is looked up in what the pipeline measured for the stage (its headline: `accuracy` finds
`eval_accuracy`), then against its start (`win_rate`, `kl`), then in its final metrics. The text is parsed
here, never evaluated as code. A stage that fails its gate is marked failed in pipeline.json and the report,
and the stages that start from its model are not run.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmforge.errors import UserError, did_you_mean

NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
NAME = r"[A-Za-z_][\w/]*"
CONDITION = re.compile(rf"^\s*(?P<metric>{NAME})\s*(?P<op>>=|<=|==|>|<)\s*"
                       rf"(?:(?P<number>{NUMBER})|(?P<stage>{NAME})\.(?P<other>{NAME})"
                       rf"(?:\s*(?P<sign>[-+])\s*(?P<offset>{NUMBER}))?)\s*$")
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}


@dataclass(frozen=True)
class Condition:
    text: str
    metric: str
    op: str
    number: float | None = None
    stage: str | None = None
    other: str | None = None
    offset: float = 0.0


def parse(text: Any, where: str) -> Condition:
    match = CONDITION.match(text) if isinstance(text, str) else None
    if match is None:
        raise UserError(f"{where}: '{text}' is not a condition. Write METRIC OP VALUE, e.g. \"accuracy >= "
                        "sft.accuracy - 0.02\" or \"kl < 2\" (OP: >=, >, <=, <, ==).")
    sign = -1.0 if match["sign"] == "-" else 1.0
    return Condition(text.strip(), match["metric"], match["op"],
                     None if match["number"] is None else float(match["number"]), match["stage"], match["other"],
                     sign * float(match["offset"]) if match["offset"] else 0.0)


def parse_gates(body: Any, path: str, names: list[str]) -> dict[str, list[Condition]]:
    """`require:` of a pipeline recipe, checked against its stage names (a condition may name only the stage
    itself or one before it)."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise UserError(f"{path}: `require` maps stage names to conditions, e.g. require: {{ppo: \"accuracy >= "
                        "sft.accuracy - 0.02\"}}.")
    gates: dict[str, list[Condition]] = {}
    for name, conditions in body.items():
        where = f"{path}: require.{name}"
        if name not in names:
            raise UserError(f"{where}: this pipeline has no stage '{name}'.{did_you_mean(str(name), names)}")
        parsed = [parse(text, where) for text in (conditions if isinstance(conditions, list) else [conditions])]
        for condition in parsed:
            if condition.stage is not None and condition.stage not in names[:names.index(name) + 1]:
                raise UserError(f"{where}: '{condition.text}' names stage '{condition.stage}', which is not a stage "
                                f"before '{name}'.{did_you_mean(condition.stage, names)}")
        gates[name] = parsed
    return gates


def figure(evaluation: dict[str, Any], final: dict[str, Any], metric: str) -> float | None:
    """A stage's figure by name: its headline (metric or eval_metric), against its start, its final metrics."""
    headline, against = evaluation.get("headline", {}), evaluation.get("against") or {}
    for source, key in ((headline, metric), (headline, f"eval_{metric}"), (against, metric), (final, metric),
                        (final, f"eval_{metric}")):
        if isinstance(source.get(key), (int, float)):
            return float(source[key])
    return None


def check(name: str, conditions: list[Condition], figures: Callable[[str, str], float | None]) -> list[str]:
    """The conditions `name` fails, each explained with its figures (a figure that was not measured fails)."""
    failed = []
    for c in conditions:
        value = figures(name, c.metric)
        bound = c.number if c.stage is None else figures(c.stage, c.other or "")
        if value is None or bound is None:
            missing = c.metric if value is None else f"{c.stage}.{c.other}"
            failed.append(f"'{c.text}': {missing} was not measured")
            continue
        bound += c.offset
        if not OPERATORS[c.op](round(value, 9), round(bound, 9)):  # 0.55 - 0.05 is 0.5, not 0.5000000000000001
            failed.append(f"'{c.text}': {c.metric} {value:.4g} is not {c.op} {bound:.4g}")
    return failed
