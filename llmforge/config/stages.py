"""What a stage is, as the rest of llmforge sees it: a declaration (`StageSpec`) and the table of them.

A stage module declares itself once: its name, its options section, the row formats it reads, the
config keys it uses and refuses, its headline metrics, whether a pipeline sets it against the model it
started from, and how it builds its parts (a training stage) or produces its output (a dataset or a
report). The recipe schema, `llmforge config`, the recipe reference, the pipeline's evaluation and report
and the run plan are derived from these declarations; nothing else lists stage names.

Stages are found through the `llmforge.stages` entry-point group (pyproject.toml), so this layer names no
stage module, and a package of your own can add stages the same way; `register` adds one at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from llmforge.errors import UserError, did_you_mean

ENTRY_POINTS = "llmforge.stages"
Output = Literal["model", "dataset", "report"]
# Sections every stage reads; each stage adds the keys it uses beyond these.
COMMON_KEYS = ("stage", "output_dir", "seed", "model", "train", "checkpoint", "distributed", "logging")


@dataclass(frozen=True)
class Cost:
    """How a stage's time is estimated for the plan (pipeline/plan.py): the share of the measured matmul rate
    it reached on the reference machine, and its forward+backward passes per row relative to plain training.
    Fitted to whole stages (evaluations included) of configs/pipelines/tiny-rlhf.yaml, seed 42, on a 2-core
    Xeon with AMX (grpo: tests/stages/test_grpo.py's run). Tokens per row are data.max_length unless the stage
    says otherwise (grpo: the tokens it generates per completion)."""

    efficiency: float
    passes: float = 1.0
    rows_per_step: Callable[[Any], int] | None = None  # default: micro_batch x grad_accum x processes
    tokens_per_row: Callable[[Any], int] | None = None  # default: data.max_length


@dataclass(frozen=True)
class Footprint:
    """What a stage's training step holds in memory besides the trained model and its optimizer, as the memory
    plan (llmforge/memory) reads it: declared by the stage (`StageSpec.footprint`, from its recipe)."""

    sequences_per_row: int = 1  # sequences per row that go through the model with gradients (a pair: 2)
    vocab_loss: bool = True  # log-probs over the vocabulary; False: a one-score head (a reward model)
    response_tokens: int | None = None  # the loss projects only this many tokens per sequence (None: every one)
    loss_kernel: Literal["llmforge", "trl"] = "llmforge"  # whose chunked log-probs it uses (kernels/vocab.py or TRL's)
    reference: Literal["none", "copy", "adapter"] = "none"  # a frozen copy of the start, or the adapter switched off
    generated_sequences: int = 0  # sequences sampled at once (their KV cache)
    frozen_models: tuple[str, ...] = ()  # other models held frozen beside it (a reward model, a named reference)
    critic: str | None = None  # a separate value model trained beside it (its model name)
    sequence_classifier: bool = False  # the trained model ends in a score head instead of the LM head
    # when the published final/ is loaded again beside the trained model, to be evaluated or scored:
    # never, when the recipe has held-out data (exact match on its prompts), or always (a reward model's statistics)
    reloads_final: Literal["never", "with_eval", "always"] = "with_eval"


@dataclass(frozen=True)
class StageSpec:
    name: str
    summary: str
    uses: tuple[str, ...] = ()  # dotted keys (or sections) read besides COMMON_KEYS and the stage's own section
    refuses: tuple[str, ...] = ()  # keys under used sections that this stage cannot honour (set = error)
    refuses_why: str = ""  # ... and why, for the message
    options: type[BaseModel] | None = None  # the stage's own section, named after the stage
    formats: tuple[str, ...] = ()  # row formats data.train accepts
    build: Callable[[Any], Any] | None = None  # training: cfg -> StageParts (engine/parts.py)
    produce: Callable[[Any, Path, Path], dict[str, Any]] | None = None  # cfg, staging, work dir -> metrics
    output: Output = "model"
    headline: tuple[str, ...] = ()  # final metrics the pipeline report shows
    logged_headline: tuple[str, ...] = ()  # ... read as the mean of the last logged steps (online stages)
    compared_with_start: bool = False  # a pipeline evaluates it against the model it started from
    judges: bool = False  # a reward model: can judge other stages in a pipeline
    samples: Literal["answers", "continuations", "none"] = "answers"  # what the report shows it doing
    check: Callable[[Any], None] | None = None  # cross-section checks at load time (raise ValueError)
    reward_model: Callable[[Any], str | None] | None = None  # the reward model a run trains against
    cost: Cost | None = None
    footprint: Callable[[Any], Footprint] | None = None  # recipe -> what it holds (default: Footprint())
    order: int = 100  # where it sits in the lifecycle, for listings (data before training before alignment)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.build is None) == (self.produce is None):
            raise ValueError(f"stage {self.name}: give exactly one of build (a training stage) or produce")

    @property
    def section(self) -> str | None:
        return self.name if self.options is not None else None

    @property
    def trains(self) -> bool:
        return self.build is not None

    def allowed(self) -> tuple[str, ...]:
        return COMMON_KEYS + self.uses + ((self.name,) if self.options is not None else ())


_REGISTRY: dict[str, StageSpec] = {}
_DISCOVERED = False


def register(spec: StageSpec) -> StageSpec:
    """Add (or replace) a stage: what an entry point's module does by being listed, or a test at run time."""
    _REGISTRY[spec.name] = spec
    from llmforge.config import compose

    compose.forget()
    return spec


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)
    from llmforge.config import compose

    compose.forget()


def stage_specs() -> dict[str, StageSpec]:
    """Every stage, in the order the entry points list them (then any registered at run time)."""
    global _DISCOVERED
    if not _DISCOVERED:
        _DISCOVERED = True
        found = {}
        for entry in metadata.entry_points(group=ENTRY_POINTS):
            spec = entry.load()
            found[spec.name] = spec
        found = dict(sorted(found.items(), key=lambda item: (item[1].order, item[0])))
        merged = {**found, **_REGISTRY}
        _REGISTRY.clear()
        _REGISTRY.update(merged)
    return _REGISTRY


def spec_for(name: str) -> StageSpec:
    specs = stage_specs()
    if name not in specs:
        raise UserError(f"stage '{name}' is not available; stages: {', '.join(specs)}.{did_you_mean(name, specs)}")
    return specs[name]
