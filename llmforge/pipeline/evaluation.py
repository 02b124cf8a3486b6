"""What a pipeline measures after each stage, by kind, for its report.

Every stage brings its own held-out figures (the headline metrics its declaration names, from
run.json's final metrics or the tail of its log). A stage declared as compared with its start
(the aligned ones) is also set against the stage it started from, on the same held-out
prompts: both models' exact match, the win-rate judged by the pipeline's reward model,
and how far it moved (sampled KL). A few generations show what the numbers mean.
Results are kept in output_dir/evals/NAME.json with the fingerprints they were made
from, so a rerun that skips a stage reuses its evaluation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from llmforge.config.stages import spec_for
from llmforge.data.sources import load_source
from llmforge.eval import prompt_items
from llmforge.eval.compare import judge_answers
from llmforge.eval.divergence import sampled_kl
from llmforge.eval.exact_match import exact_match
from llmforge.eval.kept import keep, kept
from llmforge.inference import generate, load_for_inference
from llmforge.pipeline.spec import PipelineEvaluation, PipelineStage
from llmforge.registry.runs import read_run_info

log = logging.getLogger("llmforge")

KL_PROMPTS = 64
SAMPLES = 4
PREFIX_CHARS = 24
VERSION = 4  # bump when what evaluate() measures changes, so kept evaluations are redone
TAIL_SHARE = 0.1  # online stages: reward and KL are the mean of the last 10% of logged steps


def _logged_tail(run: Path, key: str) -> float | None:
    from llmforge.report.plots import read_metrics, series

    _, values = series(read_metrics(run), key)
    if not values:
        return None
    tail = values[-max(1, int(len(values) * TAIL_SHARE)):]
    return sum(tail) / len(tail)


def headline(kind: str, run: Path) -> dict[str, float]:
    """The figures the report's table shows for a stage of this kind (its declaration names them)."""
    spec = spec_for(kind)
    final = read_run_info(run).get("final_metrics", {})
    shown = {key: final[key] if isinstance(final[key], int) else float(final[key]) for key in spec.headline
             if isinstance(final.get(key), (int, float))}
    for key in spec.logged_headline:
        value = final.get(key) if isinstance(final.get(key), (int, float)) else _logged_tail(run, key)
        if value is not None:
            shown[key] = float(value)
    return shown


def held_out_prompts(stage: PipelineStage, options: PipelineEvaluation) -> list[dict[str, Any]]:
    """The pipeline's evaluation prompts, else the stage's own: its first prompt source (answers can be
    graded), else its first preference source."""
    if options.prompts:
        return [item for source in options.prompts for item in prompt_items(load_source(source))][
            :options.max_prompts]
    loaded = [load_source(source) for source in stage.config.data.eval]
    for wanted in ("prompt", "preference"):
        for data in loaded:
            if data.format == wanted:
                return prompt_items(data)[:options.max_prompts]
    return []


def word_prefix(text: str, chars: int) -> str:
    """The first words of `text` that fit in about `chars` characters (at least one word), never cut mid-word."""
    words, length = [], 0
    for word in text.split():
        if words and length + 1 + len(word) > chars:
            break
        words.append(word)
        length += len(word) + (1 if len(words) > 1 else 0)
    return " ".join(words)


def _text_samples(stage: PipelineStage, run: Path) -> list[dict[str, str]]:
    texts = []
    for source in stage.config.data.eval:
        data = load_source(source)
        if data.format == "text":
            texts = [word_prefix(row["text"], PREFIX_CHARS) for row in list(data.rows)[:SAMPLES]]
            break
    if not texts:
        return []
    loaded = load_for_inference(str(run))
    continuations = generate(loaded, texts, chat=False, max_new_tokens=24)
    return [{"prompt": t, "answer": c} for t, c in zip(texts, continuations, strict=True)]


def evaluate(stage: PipelineStage, parent: PipelineStage | None, judge: Path | None,
             options: PipelineEvaluation) -> dict[str, Any]:
    kind, run = stage.config.stage, Path(stage.config.output_dir)
    spec = spec_for(kind)
    result: dict[str, Any] = {"kind": kind, "headline": headline(kind, run), "samples": []}
    if spec.samples == "continuations":
        result["samples"] = _text_samples(stage, run)
        return result
    if spec.samples == "none" or spec.output != "model":
        return result
    prompts = held_out_prompts(stage, options)
    if not prompts:
        return result
    if spec.compared_with_start and parent is not None:
        policy, start = load_for_inference(str(run)), load_for_inference(parent.config.output_dir)
        messages = [p["messages"] for p in prompts]
        versus = judge_answers(str(judge) if judge else None, prompts,
                               generate(policy, messages, max_new_tokens=options.max_new_tokens),
                               generate(start, messages, max_new_tokens=options.max_new_tokens))
        versus["kl"] = sampled_kl(policy, start, messages[:KL_PROMPTS])
        result["samples"] = versus.pop("samples")[:SAMPLES]
        result["against"] = {"stage": parent.name, "judge": str(judge) if judge else None, **versus}
    else:
        graded = [p for p in prompts if p.get("answer") is not None]
        if graded:
            found = exact_match(load_for_inference(str(run)), graded, options.max_new_tokens)
            result["samples"] = [{"prompt": s["prompt"], "answer": s["completion"], "expected": s["answer"]}
                                 for s in found["samples"][:SAMPLES]]
    return result


def evaluate_cached(stage: PipelineStage, parent: PipelineStage | None, judge: Path | None,
                    options: PipelineEvaluation, folder: Path) -> dict[str, Any]:
    """evaluate(), reused while the stage, its parent and the judge are the runs it was made from."""
    def fingerprint(path: str | Path | None) -> str | None:
        return read_run_info(Path(path)).get("final_fingerprint") if path else None

    key = {"version": VERSION, "eval_data": stage.config.model_dump(mode="json")["data"]["eval"],
           "options": options.model_dump(mode="json"),
           "run": fingerprint(stage.config.output_dir),
           "parent": fingerprint(parent.config.output_dir) if parent else None,
           "judge": fingerprint(judge)}
    path = folder / f"{stage.name}.json"
    if (saved := kept(path, key, needs=None)) is not None:
        return saved
    log.info("Evaluating stage '%s'.", stage.name)
    return keep(path, evaluate(stage, parent, judge, options), key)
