"""The plan as people and scripts read it: a table of terms, the refusal's message, and JSON."""

from __future__ import annotations

from typing import Any

from llmforge.config.schema import RunConfig
from llmforge.memory import Plan
from llmforge.memory.advice import Change
from llmforge.memory.estimate import GiB


def gib(value: int) -> str:
    return f"{value / GiB:,.2f} GiB"


def lines(cfg: RunConfig, planned: Plan) -> list[str]:
    e = planned.estimate
    shape = e.shape
    where = "this CPU" if e.device == "cpu" else "the GPU"
    out = [f"Memory plan for {cfg.stage} on {where} ({e.strategy}, {e.processes} process"
           f"{'es' if e.processes > 1 else ''}): {shape.parameters / 1e6:,.0f}M parameters, {shape.layers} layers, "
           f"vocabulary {shape.vocab:,}; gradient checkpointing {'on' if e.gradient_checkpointing else 'off'}, "
           f"loss {'chunked' if cfg.train.chunked_loss else 'over the whole logits'}"]
    for phase in e.phases:
        mark = "  <- peak" if phase is e.peak_phase else ""
        out.append(f"  {phase.name:<22} {gib(phase.total):>12}{mark}")
    out.append(f"  at the peak ({e.peak_phase.name}):")
    for term in sorted(e.peak_phase.terms, key=lambda t: -t.bytes):
        out.append(f"    {term.name:<20} {gib(term.bytes):>12}  {term.note}")
    share = f" x {cfg.distributed.nproc_per_node} processes on this machine" if planned.needed != e.peak else ""
    room = gib(planned.budget.bytes) if planned.budget.bytes is not None else "unknown"
    out.append(f"  predicted peak per process {gib(e.peak)}{share}; {room} free ({planned.budget.source})")
    out += [f"  note: {note}" for note in e.notes]
    return out


def refusal(cfg: RunConfig, planned: Plan, changes: list[Change]) -> str:
    e = planned.estimate
    biggest = sorted(e.peak_phase.terms, key=lambda t: -t.bytes)[:3]
    text = (f"This {cfg.stage} run is predicted to need {gib(planned.needed)} at its peak ({e.peak_phase.name}), "
            f"but {gib(planned.budget.bytes or 0)} is free ({planned.budget.source}). The largest terms: "
            + ", ".join(f"{t.name} {gib(t.bytes)}" for t in biggest) + ".")
    if changes:
        text += " Changes that fit: " + "; ".join(f"{c} ({gib(c.needed)})" for c in changes) + "."
    else:
        text += " No single change tried here fits; see `llmforge plan` for the whole breakdown."
    return text + " Run with --force to start anyway."


def as_json(planned: Plan) -> dict[str, Any]:
    e = planned.estimate
    return {"device": e.device, "strategy": e.strategy, "processes": e.processes, "peak_bytes": e.peak,
            "peak_phase": e.peak_phase.name, "needed_bytes": planned.needed, "fits": planned.fits,
            "available_bytes": planned.budget.bytes, "available_source": planned.budget.source,
            "gradient_checkpointing": e.gradient_checkpointing, "parameters": e.shape.parameters,
            "phases": {p.name: {"bytes": p.total, "terms": {t.name: t.bytes for t in p.terms}} for p in e.phases},
            "notes": e.notes}
