"""Run lm-evaluation-harness tasks on a model as llmforge loads it, and keep the results beside it.

The model is loaded once, through the same path `generate` and the server use (a LoRA run merged, or with
its adapter attached), and handed to lm-eval's HFLM as an object: lm-eval's own request building, chat
templating, batching, filters and metrics do the rest (`simple_evaluate`). Tasks that ask for chat (their
YAML's `metadata.chat`, or every task with `chat: on`) get the model's chat template; the rest see plain
text. Each task's result is saved as FOLDER/tasks/TASK.json with what it was made from (the model's
fingerprint, the task's, the options, lm-eval's version); a rerun with the same inputs reads it back
instead of measuring again.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmforge.engine.files import disk_full, folder_fingerprint
from llmforge.errors import UserError
from llmforge.eval.harness.catalog import ResolvedTask, resolve_tasks, task_folders
from llmforge.eval.harness.results import task_result
from llmforge.eval.kept import keep, kept
from llmforge.registry.runs import read_run_info

log = logging.getLogger("llmforge")

CHAT_MODES = ("auto", "on", "off")
ADAPTER_MODES = ("merged", "attached")


@dataclass
class HarnessOptions:
    """How tasks are run; everything here except batch_size is part of a saved result's identity."""

    limit: int | float | None = None  # rows per task (a fraction: a share of them)
    num_fewshot: int | None = None  # None: each task's own setting
    batch_size: int = 16
    chat: str = "auto"  # auto: tasks that ask for it; on: every task; off: none
    adapter: str = "merged"  # a LoRA run: merged into its base, or attached through peft

    def __post_init__(self) -> None:
        if self.chat not in CHAT_MODES:
            raise UserError(f"chat '{self.chat}': use one of {', '.join(CHAT_MODES)}.")
        if self.adapter not in ADAPTER_MODES:
            raise UserError(f"adapter '{self.adapter}': use one of {', '.join(ADAPTER_MODES)}.")
        if self.limit is not None and self.limit <= 0:
            raise UserError(f"limit {self.limit}: give a number of rows (or a share of them, below 1) above 0.")
        if self.limit is not None and self.limit >= 1:
            self.limit = int(self.limit)  # lm-eval reads a float as a share of the rows
        if self.batch_size < 1:
            raise UserError(f"batch size {self.batch_size}: give 1 or more.")


def model_fingerprint(model: str) -> str | None:
    """What a model's results are tied to: a run's final fingerprint, a folder's bytes (its evals/ aside);
    None for presets and hub ids (their results are not reused)."""
    path = Path(model)
    if not path.is_dir():
        return None
    info = read_run_info(path)
    if info.get("final_fingerprint"):
        return str(info["final_fingerprint"])
    return folder_fingerprint(path, skip=("evals",))


def results_folder(model: str, out: str | Path | None) -> Path:
    """Where results go: --out, else MODEL/evals for a local folder."""
    if out is not None:
        return Path(out)
    if Path(model).is_dir():
        return Path(model) / "evals"
    raise UserError(f"'{model}' is not a local folder, so its results have nowhere to live: give --out FOLDER.")


def _wants_chat(task: ResolvedTask, options: HarnessOptions) -> bool:
    return options.chat == "on" or (options.chat == "auto" and task.chat)


def _made_from(model_fp: str | None, task: ResolvedTask, options: HarnessOptions) -> dict[str, Any]:
    from lm_eval import __version__ as lm_eval_version

    return {"model": model_fp, "task": task.fingerprint, "chat": _wants_chat(task, options),
            "adapter": options.adapter, "limit": options.limit, "num_fewshot": options.num_fewshot,
            "lm_eval": lm_eval_version}


def _lm(model: str, options: HarnessOptions) -> tuple[Any, bool]:
    """lm-eval's HFLM around the model as llmforge loads it, and whether it has a chat template."""
    from lm_eval.models.huggingface import HFLM

    from llmforge.inference import load_for_inference

    loaded = load_for_inference(model, merge_adapter=options.adapter == "merged")
    lm = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=options.batch_size)
    return lm, bool(getattr(loaded.tokenizer, "chat_template", None))


def _evaluate(lm: Any, manager: Any, tasks: list[ResolvedTask], chat: bool, options: HarnessOptions) -> dict:
    import os

    from lm_eval import simple_evaluate

    from llmforge.engine.quiet import library_output

    # lm-eval bootstraps BLEU/chrF stderrs in a forked multiprocessing pool; a fork of a process running torch's
    # (and a tracker's) threads can inherit a held lock and hang for ever. Its own switch keeps it in-process.
    os.environ.setdefault("DISABLE_MULTIPROC", "1")
    try:
        with library_output():  # its own prints ("bootstrapping for stddev: bleu") and bars, unless --verbose
            output = simple_evaluate(lm, tasks=[t.spec for t in tasks], task_manager=manager, limit=options.limit,
                                     num_fewshot=options.num_fewshot, apply_chat_template=chat,
                                     fewshot_as_multiturn=chat and bool(options.num_fewshot), log_samples=True,
                                     bootstrap_iters=1000)
    except (ConnectionError, OSError) as exc:
        names = ", ".join(t.name for t in tasks)
        if disk_full(exc):  # datasets prepares every task's data in its cache first
            from datasets import config

            raise UserError(f"--tasks {names}: no space left to prepare the task data in the datasets cache "
                            f"({config.HF_DATASETS_CACHE}). Free space there, or point HF_DATASETS_CACHE at a disk "
                            "with room, and run the same command again.") from None
        raise UserError(f"--tasks {names}: a dataset could not be read ({str(exc)[:300]}). Tasks from lm-eval's "
                        "registry download their data from the Hugging Face hub; where it is not reachable, "
                        "use local task folders (--task-path) or a machine with the hub's data cached.") from None
    if output is None:
        raise UserError("lm-eval returned no results.")
    return output


def run_tasks(model: str, names: list[str], options: HarnessOptions, folder: Path,
              task_paths: list[str | Path] | None = None, reuse: bool = True) -> dict[str, dict[str, Any]]:
    """{task: result} for every named task: saved results reused where they were made from the same model,
    task and options; the rest measured in one load of the model."""
    tasks, manager = resolve_tasks(names, task_folders(task_paths))
    model_fp = model_fingerprint(model)
    results: dict[str, dict[str, Any]] = {}
    todo: list[tuple[ResolvedTask, dict[str, Any]]] = []
    for task in tasks:
        made_from = _made_from(model_fp, task, options)
        saved = kept(folder / "tasks" / f"{task.name}.json", made_from) if reuse else None
        if saved is not None:
            results[task.name] = {**saved, "reused": True}
        else:
            todo.append((task, made_from))
    if not todo:
        return results
    log.info("Measuring %s on %s.", ", ".join(t.name for t, _ in todo), model)
    lm, has_template = _lm(model, options)
    for chat in (False, True):
        batch = [(t, m) for t, m in todo if _wants_chat(t, options) == chat]
        if not batch:
            continue
        applied = chat and has_template
        if chat and not has_template:
            log.warning("%s has no chat template: %s run on plain text.", model, ", ".join(t.name for t, _ in batch))
        output = _evaluate(lm, manager, [t for t, _ in batch], applied, options)
        for task, made_from in batch:
            result = keep(folder / "tasks" / f"{task.name}.json", {
                **task_result(task.name, output), "model": model, "chat_template": applied,
                "options": asdict(options)}, made_from)
            results[task.name] = {**result, "reused": False}
    return {name: results[name] for name in names}
