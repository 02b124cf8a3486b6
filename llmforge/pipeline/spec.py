"""A pipeline recipe: stages in order, each an inline recipe (or `extends:` of one), wired by reference.

    output_dir: runs/tiny-rlhf          # stage outputs: output_dir/<stage name> unless the stage sets one
    defaults: {seed: 42}                # merged under every stage
    evaluation:                         # optional: how each stage is evaluated for the report
      prompts: [{name: arithmetic-prompts, split: test}]   # default: each stage's own held-out prompts
      judge: rm                         # default: the latest rm stage before the one judged
      tasks: [llmforge_arithmetic_choice, llmforge_story]   # lm-eval tasks on the base and after each stage
      retention_threshold: 0.05         # flag a task whose headline metric drops more than this
      safety: true                      # the refusal probe after each stage (or {prompts: FILE, judge: MODEL})
    require:                            # optional gates (pipeline/gates.py): a stage that fails is marked
      ppo: "accuracy >= sft.accuracy - 0.02"   # failed and its model is not handed on
    stages:
      sft: {extends: ../sft/tiny-full.yaml}
      rm:  {extends: ../rm/tiny.yaml, model: {name: "${sft.output}"}}

`${name.output}` is the output folder of an earlier stage. Every stage is resolved and
validated before anything runs, so a typo in the last stage fails in the first second.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from llmforge.config.loader import RawConfig, apply_override, merge_layer, read_yaml, validate
from llmforge.config.schema import DataSource, RunConfig, Section
from llmforge.config.stages import spec_for
from llmforge.errors import UserError, did_you_mean
from llmforge.pipeline.gates import Condition, parse_gates

REFERENCE = re.compile(r"\$\{([^}]*)\}")
TOP_KEYS = ("output_dir", "defaults", "evaluation", "require", "stages")


class SafetyProbe(Section):
    """The refusal probe: adversarial requests answered by each stage's model (eval/safety.py)."""

    prompts: str | None = Field(None, description="a jsonl file of requests (`prompt`, optional `category`); "
                                "default: the 40 shipped ones")
    judge: str | None = Field(None, description="a model asked whether each answer refuses; default: refusal "
                              "phrases")
    max_new_tokens: int = Field(64, ge=1)


class PipelineEvaluation(Section):
    """The report's measurements: the same held-out prompts and judge for every stage, when set; lm-eval tasks
    and the safety probe on the base model and after each stage (pipeline/retention.py)."""

    prompts: list[DataSource] = Field(default_factory=list)
    judge: str | None = None
    max_prompts: int = Field(200, ge=1)
    max_new_tokens: int = Field(64, ge=1)
    tasks: list[str] = Field(default_factory=list, description="lm-eval task names measured on every model")
    task_paths: list[str] = Field(default_factory=list, description="folders of your own lm-eval task YAML")
    limit: float | None = Field(None, gt=0, description="rows per task (below 1: a share)")
    num_fewshot: int | None = Field(None, ge=0)
    chat: Literal["auto", "on", "off"] = "auto"
    retention_threshold: float = Field(0.05, ge=0, description="a drop of a task's headline metric beyond this, "
                                       "against the base or the stage started from, is flagged")
    safety: bool | SafetyProbe = False

    def safety_probe(self) -> SafetyProbe | None:
        if self.safety is True:
            return SafetyProbe()
        return self.safety or None


@dataclass
class PipelineStage:
    name: str
    config: RunConfig
    needs: list[str]  # earlier stages this one names


@dataclass
class Pipeline:
    path: Path
    output_dir: Path
    stages: list[PipelineStage]
    evaluation: PipelineEvaluation = field(default_factory=PipelineEvaluation)
    gates: dict[str, list[Condition]] = field(default_factory=dict)


def _references(value: Any) -> list[str]:
    if isinstance(value, str):
        return REFERENCE.findall(value)
    if isinstance(value, dict):
        return [ref for item in value.values() for ref in _references(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in _references(item)]
    return []


def _substitute(value: Any, outputs: dict[str, str], where: str, earlier: list[str], later: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, outputs, f"{where}.{k}", earlier, later) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, outputs, f"{where}.{i}", earlier, later) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def resolve(match: re.Match) -> str:
        name, _, attribute = match.group(1).strip().partition(".")
        if attribute != "output":
            raise UserError(f"{where}: '{match.group(0)}' is not a reference this version knows; write "
                            "${STAGE.output} (the output folder of an earlier stage).")
        if name in later:
            raise UserError(f"{where}: '{match.group(0)}' names stage '{name}', which runs later. A stage can "
                            "only use the outputs of the stages listed before it.")
        if name not in outputs:
            raise UserError(f"{where}: '{match.group(0)}' names no stage of this pipeline.{did_you_mean(name, earlier)}"
                            f" Stages before it: {', '.join(earlier) or 'none'}.")
        return outputs[name]

    return REFERENCE.sub(resolve, value)


PIPELINE_KEYS = ("output_dir", "defaults.", "evaluation.", "require.")


def _recipe_keys() -> set[str]:
    """Every top-level key a recipe can hold (an override of one applies to every stage)."""
    from llmforge.config.compose import run_config_class

    return set(run_config_class().model_fields)


def _split_overrides(overrides: list[str] | tuple[str, ...], names: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Per-stage overrides and the pipeline's own: `sft.train.lr=1e-4` -> sft's `train.lr=1e-4`; `output_dir=`,
    `defaults.KEY=`, `evaluation.KEY=` and `require.STAGE=` -> the pipeline's; any other `KEY=VALUE` (`seed=1`) -> every stage's."""
    split: dict[str, list[str]] = {name: [] for name in names}
    top: list[str] = []
    recipe_keys = _recipe_keys() if overrides else set()
    for text in overrides:
        key, equals, _ = text.partition("=")
        stage, _, rest = key.partition(".")
        if not equals or not key:
            raise UserError(f"Override '{text}': write KEY=VALUE: {names[0]}.train.lr=1e-4 for one stage, "
                            "seed=1 for every stage, output_dir=runs/other for the pipeline's folder.")
        if stage in split and rest:
            split[stage].append(text.partition(".")[2])
        elif key == "output_dir" or key.startswith(PIPELINE_KEYS[1:]):
            top.append(text)
        elif rest and not did_you_mean(stage, recipe_keys) and (hint := did_you_mean(stage, names)):
            # close to a stage name and to no recipe key (a recipe key matches itself): a mistyped stage
            raise UserError(f"Override '{text}': this pipeline has no stage '{stage}'.{hint} (A key without a "
                            "stage name, like seed=1, sets every stage.)")
        else:
            for name in names:
                split[name].append(text)
    return split, top


def load_pipeline(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Pipeline:
    path = Path(path)
    data = read_yaml(path)
    stage_names = list(data["stages"]) if isinstance(data.get("stages"), dict) else []
    per_stage, top = _split_overrides(overrides, stage_names or ["STAGE"])
    if top:
        raw = RawConfig()
        raw.merge(data, str(path))
        for text in top:
            apply_override(raw, text)
        data = raw.data
    unknown = [key for key in data if key not in TOP_KEYS]
    if unknown:
        raise UserError(f"{path}: unknown key '{unknown[0]}' at the top of a pipeline (expected: "
                        f"{', '.join(TOP_KEYS)}).{did_you_mean(unknown[0], TOP_KEYS)}")
    stages = data.get("stages")
    if not isinstance(stages, dict) or not stages:
        raise UserError(f"{path}: `stages` must be a mapping of stage names to recipes, in run order.")
    if not isinstance(data.get("output_dir"), str):
        raise UserError(f"{path}: set `output_dir`, the pipeline's folder (stage outputs go inside it).")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise UserError(f"{path}: `defaults` must be a mapping of recipe keys merged under every stage.")
    root = Path(data["output_dir"])
    names = list(stages)
    outputs: dict[str, str] = {}
    built: list[PipelineStage] = []
    for index, name in enumerate(names):
        body = stages[name]
        if not isinstance(body, dict):
            raise UserError(f"{path}: stage '{name}' must be a recipe mapping (keys, or extends: a recipe file).")
        raw = RawConfig()
        raw.merge(dict(defaults), f"{path} (defaults)")
        merge_layer(body, path.parent, f"{path} (stage '{name}')", raw)
        if "output_dir" not in body:  # an extended recipe's own output_dir is not the pipeline's
            raw.data["output_dir"] = str(root / name)
        for text in per_stage.get(name, []):
            apply_override(raw, text)
        needs = sorted({ref.split(".")[0].strip() for ref in _references(raw.data)})
        raw.data = _substitute(raw.data, outputs, f"{path} (stage '{name}')", names[:index], names[index + 1:])
        try:
            config = validate(raw)
        except UserError as exc:
            raise UserError(f"stage '{name}' of {path}: {exc}") from None
        outputs[name] = config.output_dir
        built.append(PipelineStage(name, config, needs))
    folders = [stage.config.output_dir for stage in built]
    if len(set(folders)) != len(folders):
        raise UserError(f"{path}: two stages write the same output_dir; give each its own.")
    return Pipeline(path, root, built, _evaluation(path, data.get("evaluation"), built),
                    parse_gates(data.get("require"), str(path), names))


def _evaluation(path: Path, body: Any, stages: list[PipelineStage]) -> PipelineEvaluation:
    try:
        evaluation = PipelineEvaluation.model_validate(body or {})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise UserError(f"{path}: evaluation.{where}: {error['msg']}") from None
    reward_stages = [s.name for s in stages if spec_for(s.config.stage).judges]
    if evaluation.judge is not None and evaluation.judge not in reward_stages:
        raise UserError(f"{path}: evaluation.judge '{evaluation.judge}' must name a reward-model stage of this "
                        f"pipeline ({', '.join(reward_stages) or 'it has none'}).{did_you_mean(evaluation.judge, reward_stages)}")
    return evaluation
