"""`llmforge eval`: the command's options and what it prints.

Three kinds of measurement share the command: a dataset (--dataset/--path: accuracy, loss, reward-model
pair accuracy, or a win-rate with --against/--judge), lm-eval tasks (--tasks), and the safety probe
(--safety). Task and probe results are kept in the model's evals/ folder (or --out) and reused on rerun.
JSON goes to standard output for scripts; a table of the task figures to standard error for people.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from llmforge.commands import whole_numbers
from llmforge.errors import UserError

EXAMPLE = ("llmforge eval runs/tiny-rlhf/sft --dataset arithmetic-prompts --split test --options max_operand=19\n"
           "  llmforge eval runs/tiny-rlhf/sft --dataset arithmetic-prompts --options max_operand=19 --pass-at 1,4,16\n"
           "  llmforge eval runs/tiny-rlhf/sft --tasks llmforge_arithmetic,llmforge_story --safety\n"
           "  llmforge eval runs/tiny-rlhf/dpo --against runs/tiny-rlhf/sft --judge runs/tiny-rlhf/rm "
           "--dataset arithmetic-prompts --options max_operand=19")


def add_arguments(ev: argparse.ArgumentParser) -> None:
    ev.add_argument("model", help="run folder, LoRA run folder, HF folder, hub id or preset")
    data = ev.add_argument_group("a dataset")
    data.add_argument("--dataset", help="a built-in or hub dataset name")
    data.add_argument("--path", help="a local data file or folder")
    data.add_argument("--format", help="row format of --path (text, alpaca, sharegpt, messages, preference, prompt)")
    data.add_argument("--against", help="baseline model: report the win-rate of MODEL against it")
    data.add_argument("--judge", help="reward model that judges the win-rate (an rm run)")
    data.add_argument("--split", default="test", help="split to read (default: test)")
    data.add_argument("--options", nargs="+", default=[], metavar="KEY=VALUE",
                      help="options of a built-in dataset, as a recipe's data options (e.g. max_operand=9)")
    data.add_argument("--max-samples", type=int, help="score only the first N rows")
    data.add_argument("--max-length", type=int, default=1024, help="tokens per row scored")
    data.add_argument("--pass-at", metavar="K[,K...]",
                      help="prompt rows with answers: pass@k from max(K) samples per prompt (e.g. 1,4,8,16) beside "
                           "greedy exact match: the room RL with a verifiable reward has")
    data.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of --pass-at (default 1)")
    tasks = ev.add_argument_group("lm-evaluation-harness tasks")
    tasks.add_argument("--tasks", help="comma-separated task or group names: llmforge's (llmforge_arithmetic, "
                       "llmforge_arithmetic_choice, llmforge_story), your --task-path ones, or lm-eval's "
                       "(mmlu, gsm8k, hellaswag, arc_easy, ifeval, ...: their data come from the hub)")
    tasks.add_argument("--task-path", action="append", default=[], metavar="PATH",
                       help="a folder (or file) of lm-eval task YAML; relative data_files are read beside it")
    tasks.add_argument("--limit", type=float, help="rows per task (below 1: a share of them)")
    tasks.add_argument("--num-fewshot", type=int, help="examples in each prompt (default: the task's own)")
    tasks.add_argument("--batch-size", type=int, default=16, help="rows per forward pass (default 16)")
    tasks.add_argument("--chat", choices=("auto", "on", "off"), default="auto",
                       help="apply the model's chat template: auto = to tasks that ask for it (default)")
    tasks.add_argument("--adapter", choices=("merged", "attached"), default="merged",
                       help="a LoRA run: merged into its base (default) or attached through peft")
    probe = ev.add_argument_group("safety probe")
    probe.add_argument("--safety", nargs="?", const="", metavar="FILE",
                       help="answer adversarial requests and report the refusal rate: the shipped 40, or your "
                            "jsonl (`prompt`, optional `category`)")
    probe.add_argument("--safety-judge", metavar="MODEL",
                       help="a model asked whether each answer refuses (default: refusal phrases)")
    ev.add_argument("--out", help="folder for task and probe results (default: MODEL/evals)")
    ev.add_argument("--rerun", action="store_true", help="measure again even where a kept result matches")


def _table(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| task | metric | value | stderr | rows | kept |", "|---|---|---|---|---|---|"]
    for name, result in results.items():
        for metric, entry in result["metrics"].items():
            stderr = "-" if entry["stderr"] is None else f"{entry['stderr']:.4f}"
            lines.append(f"| {name} | {metric} | {entry['value']:.4f} | {stderr} | {result.get('samples') or '-'} "
                         f"| {'reused' if result.get('reused') else 'measured'} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.tasks is None and args.safety is None:
        return _dataset(args)
    if args.dataset or args.path or args.against:
        raise UserError("give either a dataset (--dataset/--path) or --tasks/--safety, not both in one call.")
    from pathlib import Path

    from llmforge.eval.harness import HarnessOptions, results_folder, run_tasks
    from llmforge.eval.safety import probe_cached

    folder = results_folder(args.model, args.out)
    printed: dict[str, Any] = {"model": args.model, "saved_in": str(folder)}
    if args.tasks is not None:
        options = HarnessOptions(limit=args.limit, num_fewshot=args.num_fewshot, batch_size=args.batch_size,
                                 chat=args.chat, adapter=args.adapter)
        names = [name.strip() for name in args.tasks.split(",") if name.strip()]
        results = run_tasks(args.model, names, options, folder, [Path(p) for p in args.task_path],
                            reuse=not args.rerun)
        print(_table(results), file=sys.stderr)
        printed["tasks"] = {name: {key: r.get(key) for key in ("metrics", "subtasks", "samples", "num_fewshot",
                                                                 "chat_template", "reused")}
                            for name, r in results.items()}
    if args.safety is not None:
        found = probe_cached(args.model, folder, args.safety or None, args.safety_judge, reuse=not args.rerun)
        print(f"refusal rate {found['refusal_rate']:.3f} of {found['prompts']} requests (judged by "
              f"{found['judged_by']}); answers in {folder / 'safety.json'}", file=sys.stderr)
        printed["safety"] = {key: found[key] for key in ("refusal_rate", "prompts", "by_category", "judged_by",
                                                         "reused")}
    print(json.dumps(printed))
    return 0


def _dataset(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from llmforge.config.loader import check_message, parse_override
    from llmforge.config.schema import DataSource

    options = {".".join(key): value for key, value in map(parse_override, args.options)}
    try:
        source = DataSource(name=args.dataset, path=args.path, format=args.format, split=args.split,
                            max_samples=args.max_samples, options=options)
    except ValidationError as exc:
        raise UserError(f"eval data: {check_message(exc.errors()[0])}") from None
    ks = whole_numbers(args.pass_at, "--pass-at", "1,4,8,16", minimum=1) if args.pass_at else None
    from llmforge.eval import evaluate  # torch: after the arguments are known to be good

    print(json.dumps(evaluate(args.model, source, max_length=args.max_length, baseline=args.against,
                              judge=args.judge, pass_at=ks, temperature=args.temperature)))
    return 0

