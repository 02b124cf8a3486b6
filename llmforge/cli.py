"""`llmforge`: one entry point; each subcommand is a thin call into the package.

Exit codes (the contract): 0 success, 2 user error (message, no traceback), 1 an internal failure.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from llmforge import __version__
from llmforge.commands import bench as bench_command
from llmforge.commands import eval as eval_command
from llmforge.commands import pipeline as pipeline_command
from llmforge.commands import plan as plan_command
from llmforge.commands import serve as serve_command
from llmforge.engine.stopped import Stopped
from llmforge.errors import UserError
from llmforge.hub import settle_offline

EXIT_OK, EXIT_INTERNAL, EXIT_USER = 0, 1, 2



def _train(args: argparse.Namespace) -> int:
    from llmforge.config import load_config

    cfg = load_config(args.config, args.overrides)  # before torch is imported: a typo is answered at once
    from llmforge.distributed import launcher

    if args.dry_run:
        print(launcher.describe_launch(cfg, args.config, args.overrides))
        return EXIT_OK
    from llmforge.config.stages import spec_for
    from llmforge.distributed.state import die_with_launcher, leave_process_group
    from llmforge.engine.runner import check_runnable, run_stage
    from llmforge.memory.check import refuse_unless_fits

    die_with_launcher()
    if check_runnable(cfg):
        return EXIT_OK
    refuse_unless_fits(cfg, args.force)  # before any weight is loaded
    if launcher.needs_launch(cfg):
        return launcher.launch(cfg, args.config, args.overrides)
    try:
        outcome = run_stage(cfg, spec_for(cfg.stage))
    finally:
        leave_process_group()
    if outcome.is_main:
        from llmforge.engine.console import summary

        print(summary(outcome.status, outcome.output_dir, outcome.metrics, outcome.metrics.get("train_wall_seconds")))
    return EXIT_OK


def _lineage(args: argparse.Namespace) -> int:
    import json

    from llmforge.pipeline.lineage import read_lineage, render

    tree = read_lineage(args.run)
    print(json.dumps(tree, indent=2) if args.json else "\n".join(render(tree)))
    return EXIT_OK


def _plot(args: argparse.Namespace) -> int:
    from llmforge.report.plots import plot_run

    run = Path(args.run)
    written = plot_run(run, Path(args.out) if args.out else run / "plots")
    if not written:
        raise UserError(f"{run}/metrics.jsonl has no logged steps to plot yet.")
    for path in written:
        print(path)
    return EXIT_OK


def _slurm(args: argparse.Namespace) -> int:
    from llmforge.config import load_config
    from llmforge.distributed.slurm import sbatch_script

    cfg = load_config(args.config, args.overrides)
    print(sbatch_script(cfg, args.config, args.overrides, args.nodes, args.gpus_per_node, args.partition,
                        args.time), end="")
    return EXIT_OK


def _eval(args: argparse.Namespace) -> int:
    return eval_command.run(args)


def _export(args: argparse.Namespace) -> int:
    from llmforge.export import export

    print(f"exported: {export(args.model, args.out, args.force)}")
    return EXIT_OK


def _generate(args: argparse.Namespace) -> int:
    from llmforge.inference import generate, load_for_inference

    loaded = load_for_inference(args.model)
    prompts = args.prompt or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not prompts:
        raise UserError("Give --prompt TEXT (repeatable), or prompts on standard input, one per line.")
    answers = generate(loaded, prompts, chat=not args.raw, max_new_tokens=args.max_new_tokens,
                       temperature=args.temperature, top_p=args.top_p)
    for prompt, text in zip(prompts, answers, strict=True):  # on a terminal beside its prompt; piped, the answer
        print(f"{prompt}  ->  {text}" if sys.stdout.isatty() else text)
    return EXIT_OK


def _data_inspect(args: argparse.Namespace) -> int:
    from llmforge.curate.inspect import as_source, inspect_source, render, write

    tokenizer = None
    if args.model:
        from llmforge.config.schema import ModelConfig
        from llmforge.registry.models import load_tokenizer, resolve_source

        tokenizer = load_tokenizer(resolve_source(args.model), ModelConfig(name=args.model))
    reports = [inspect_source(as_source(s, args.format), tokenizer, args.max_length) for s in args.sources]
    print(render(reports))
    if args.out:
        print(f"written: {write(reports, Path(args.out))}/report.md (and report.html, histograms)")
    return EXIT_OK


def _sweep(args: argparse.Namespace) -> int:
    from llmforge.sweep import run_sweep

    print("\n".join(run_sweep(args.sweep, status=args.status)))
    return EXIT_OK


def _chat(args: argparse.Namespace) -> int:
    from llmforge.inference import ChatSession, load_for_inference

    session = ChatSession(load_for_inference(args.model), args.system, args.max_new_tokens, args.temperature,
                          args.top_p)
    interactive = sys.stdin.isatty()
    if interactive:
        print("Chat with the model; /reset clears the conversation, /exit (or Ctrl-D) quits.")
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line or line.strip() == "/exit":
            return EXIT_OK
        if line.strip() == "/reset":
            session.reset()
            continue
        if not line.strip():
            continue
        for piece in session.reply(line.strip()):
            print(piece, end="", flush=True)
        print(flush=True)


def _config(args: argparse.Namespace) -> int:
    from llmforge.config import dump, load_config

    print(dump(load_config(args.config, args.overrides)), end="")
    return EXIT_OK


def _models(args: argparse.Namespace) -> int:
    from llmforge.registry import PRESETS, family_for
    from llmforge.registry.runs import find_runs

    print("Presets (random init; pass as model.name):")
    for preset in PRESETS.values():
        family = family_for(preset.model_type)
        print(f"  {preset.name:<14} {family.name:<8} {preset.description}")
    print("\nAlso accepted: a Hugging Face model id, a local HF folder, or a completed run's output_dir.")
    runs = list(find_runs(Path(args.runs)))
    print(f"\nRuns under {args.runs}/:" if runs else f"\nNo runs under {args.runs}/ yet.")
    for folder, info in runs:
        print(f"  {str(folder):<40} {info.get('stage', '?'):<9} {info.get('status', '?')}")
    return EXIT_OK


def _datasets(args: argparse.Namespace) -> int:
    from llmforge.config.schema import DATA_FORMATS
    from llmforge.data.builtin import BUILTINS

    print("Built-in datasets (offline, deterministic; splits: train, test):")
    for builtin in BUILTINS.values():
        options = ", ".join(f"{k}={v.default}" for k, v in builtin.options.model_fields.items())
        print(f"  {builtin.name:<19} {builtin.format:<10} {builtin.description}\n  {'':<30}options: {options}")
    print(f"\nFormats for local files and hub datasets: {', '.join(DATA_FORMATS)}.")
    print("Local files: .jsonl .json .parquet .csv .txt (a file or a folder of them), e.g.")
    print("  data.train: [{path: my.jsonl, format: text, columns: {text: content}}]")
    return EXIT_OK


DESCRIPTION = """Pretrain, fine-tune, align, evaluate and serve language models from YAML recipes, with exact
resume after any interruption. Every command takes --help; exit codes: 0 done, 2 your input needs fixing
(the message says what and where), 3 a pipeline stage failed its `require` gate, 1 a bug in llmforge."""

EPILOG = """examples:
  llmforge pipeline configs/pipelines/tiny-rlhf.yaml   # the whole lifecycle on a CPU, with a report
  llmforge train configs/sft/tiny-lora.yaml train.lr=1e-4
  llmforge chat runs/tiny-rlhf/dpo
  llmforge models                                       # presets and the runs on disk"""

EXAMPLES = {
    "train": "llmforge train configs/sft/tiny-lora.yaml train.lr=1e-4 output_dir=runs/lr1e-4\n"
             "  llmforge train configs/pretrain/llama3-1b.yaml distributed.nproc_per_node=8 --dry-run",
    "config": "llmforge config configs/sft/tiny-lora.yaml adapter.r=16",
    "pipeline": "llmforge pipeline configs/pipelines/tiny-rlhf.yaml sft.train.max_steps=200\n"
                "  llmforge pipeline configs/pipelines/tiny-rlhf.yaml --dry-run\n"
                "  llmforge pipeline configs/pipelines/tiny-rlhf.yaml --seeds 42,1,2,3   # -> runs/tiny-rlhf/seeds.md",
    "lineage": "llmforge lineage runs/tiny-rlhf/dpo",
    "plot": "llmforge plot runs/tiny-rlhf/ppo --out plots/",
    "generate": 'llmforge generate runs/tiny-rlhf/dpo --prompt "What is 9 + 8?" --max-new-tokens 8',
    "data": "llmforge data inspect my-data.jsonl --model tiny-llama --max-length 512 --out inspect/",
    "sweep": "llmforge sweep configs/sweeps/tiny-sft-lora.yaml     # then: --status",
    "serve": serve_command.EXAMPLE,
    "chat": 'llmforge chat runs/tiny-rlhf/sft --system "Answer with a number."',
    "eval": eval_command.EXAMPLE,
    "export": "llmforge export runs/sft-tiny-lora exported/sft-merged",
    "slurm": "llmforge slurm configs/sft/llama3-8b-lora.yaml --nodes 2 --partition gpu > job.sh && sbatch job.sh",
    "bench": bench_command.EXAMPLE,
    "plan": plan_command.EXAMPLE,
    "models": "llmforge models --runs runs",
    "datasets": "llmforge datasets",
}


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="llmforge", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"llmforge {__version__}")
    parser.add_argument("--verbose", action="store_true", help="show the libraries' own warnings, progress bars "
                        "and load reports (hidden by default)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, fn: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=formatter,
                           epilog=f"example:\n  {EXAMPLES[name]}" if name in EXAMPLES else None)
        p.set_defaults(func=fn)
        return p

    def recipe(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("config", help="YAML recipe")
        p.add_argument("overrides", nargs="*", metavar="key.path=value", help="override recipe keys")
        return p

    for name, fn, text in (("train", _train, "run one stage from a recipe (run it again to resume)"),
                           ("config", _config, "print the resolved, validated recipe")):
        p = recipe(command(name, fn, text))
        if name == "train":
            p.add_argument("--dry-run", action="store_true",
                           help="print the launch command and generated DeepSpeed/FSDP config, run nothing")
            p.add_argument("--force", action="store_true",
                           help="start even when the memory plan predicts more than the device has free")
    pipe = recipe(command("pipeline", pipeline_command.run, "run a chain of stages from one recipe: current stages are "
                          "skipped, an interrupted one resumes, changed ones run again"))
    pipe.add_argument("--dry-run", action="store_true", help="validate every stage and print the plan, run nothing")
    pipe.add_argument("--force", action="store_true",
                      help="start even when the memory plan predicts a stage needs more than the device has free")
    pipe.add_argument("--seeds", metavar="N,N,...",
                      help="run the recipe once per seed into OUTPUT_DIR/seed-N, then write OUTPUT_DIR/seeds.md: "
                           "each stage's held-out figures and gains with their mean and range over the seeds")
    plan_command.add_arguments(command("plan", plan_command.run, "predict a recipe's peak memory per process, "
                                       "term by term, and whether it fits this device (or a GPU of a size)"))
    lin = command("lineage", _lineage, "show what a run was made from: parent runs, fingerprints, data")
    lin.add_argument("run", help="a run's output_dir")
    lin.add_argument("--json", action="store_true", help="print the tree as JSON")
    plot = command("plot", _plot, "draw a run's loss/reward/KL/accuracy curves as PNGs from its metrics.jsonl")
    plot.add_argument("run", help="a run's output_dir")
    plot.add_argument("--out", help="folder for the PNGs (default: RUN/plots)")

    def sampling(p: argparse.ArgumentParser) -> None:
        p.add_argument("model", help="run folder, LoRA run folder, HF folder, hub id or preset")
        p.add_argument("--max-new-tokens", type=int, default=128, help="longest answer, in tokens (default 128)")
        p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature; 0 = greedy (default)")
        p.add_argument("--top-p", type=float, default=1.0,
                       help="nucleus sampling: sample from the smallest set of tokens holding this much "
                            "probability (default 1.0 = all; used when --temperature > 0)")

    gen = command("generate", _generate, "complete prompts with a model (chat template applied)")
    sampling(gen)
    gen.add_argument("--prompt", action="append", help="a prompt (repeatable); else read stdin, one per line")
    gen.add_argument("--raw", action="store_true", help="no chat template: continue the text as given")
    chat = command("chat", _chat, "talk to a model in the terminal, answers streamed as they are generated")
    sampling(chat)
    chat.add_argument("--system", help="a system prompt")
    eval_command.add_arguments(command("eval", _eval, "score a model: on a dataset (accuracy, loss/perplexity, reward-model "
                          "pair accuracy, win-rate with --against/--judge), on lm-eval tasks (--tasks), or "
                          "on the safety probe (--safety)"))
    exp = command("export", _export, "write a plain HF folder (LoRA merged, stop tokens kept) that transformers "
                  "and vLLM load")
    exp.add_argument("model", help="run folder, LoRA run folder, HF folder or hub id")
    exp.add_argument("out", help="output folder")
    exp.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    slurm = recipe(command("slurm", _slurm, "print an sbatch script that runs the recipe on N nodes"))
    slurm.add_argument("--nodes", type=int, required=True, help="number of nodes")
    slurm.add_argument("--gpus-per-node", type=int, default=8, help="GPUs (processes) per node (default 8)")
    slurm.add_argument("--partition", help="SLURM partition")
    slurm.add_argument("--time", help="time limit, e.g. 48:00:00")
    bench_command.add_arguments(command("bench", bench_command.run, "measure speed and memory of every stage, side "
                                        "by side with plain TRL, a plain PyTorch loop and this device's matmul "
                                        "ceiling"))
    serve_command.add_arguments(command("serve", serve_command.run, "serve models over OpenAI's HTTP API (chat and "
                                        "text completions, streamed), with a chat page at / that compares two "
                                        "models side by side"))
    sweep = command("sweep", _sweep, "search hyperparameters with Optuna: every trial an ordinary run of a recipe "
                    "or pipeline; several processes can share one study; run it again to resume")
    sweep.add_argument("sweep", help="sweep YAML: base, space, objective, budget, sampler, pruner, storage")
    sweep.add_argument("--status", action="store_true", help="print the table of trials so far, run nothing")
    data = command("data", lambda a: a.data_parser.error("name a subcommand (inspect)"), "look at datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", help="inspect: what a dataset holds")
    data.set_defaults(data_parser=data)
    inspect = data_sub.add_parser("inspect", help="rows, format, lengths per role, duplicates, empty answers",
                                  description="what a dataset holds: rows, format, length distributions per role "
                                  "(tokens with --model), turns, empty answers, exact and near duplicates",
                                  formatter_class=formatter)
    inspect.set_defaults(func=_data_inspect)
    inspect.add_argument("sources", nargs="+", metavar="SOURCE",
                         help="a local file or folder, a built-in (NAME or NAME:SPLIT) or a hub dataset")
    inspect.add_argument("--format", help="row format, when it cannot be read off the columns")
    inspect.add_argument("--model", help="count tokens with this model's tokenizer")
    inspect.add_argument("--max-length", type=int, help="with --model: report the share of rows over this")
    inspect.add_argument("--out", help="also write report.md, report.html and PNG histograms here")
    models = command("models", _models, "list model presets and local runs")
    models.add_argument("--runs", default="runs", help="folder to search for runs (default: runs)")
    command("datasets", _datasets, "list built-in datasets and data formats")
    return parser


def _quiet_libraries(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="[llmforge] %(message)s", stream=sys.stderr)
    for name in ("transformers", "datasets", "accelerate", "torch", "DeepSpeed", "mlflow", "alembic", "httpx",
                 "matplotlib"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    # lm-eval warns that a model passed as an object ignores its loading options: that is how llmforge passes it
    logging.getLogger("lm_eval").setLevel(logging.INFO if verbose else logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from llmforge.engine.quiet import quiet

    quiet(verbose)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Like parse_args, but `key=value` overrides may also come after options (`--nodes 4 train.lr=1e-4`)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(item.startswith("-") or "=" not in item for item in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    code = _run(argv)
    from llmforge.distributed import launched_externally

    if launched_externally():
        # A launched worker has published its output and left its process group; interpreter teardown can
        # still abort it when gloo's threads are destroyed ("terminate called without an active exception"),
        # turning a finished run into a failed one. Leave without that teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    return code


# Arguments that name a model (MODEL, --model, --against, --judge, --safety-judge): each is resolved before the
# command imports torch, so a mistyped run folder is answered at once.
MODEL_ARGUMENTS = ("model", "against", "judge", "safety_judge")


def _check_models(args: argparse.Namespace) -> None:
    from llmforge.registry.sources import resolve_source

    for key in MODEL_ARGUMENTS:
        value = getattr(args, key, None)
        if isinstance(value, str):
            resolve_source(value)


def _run(argv: Sequence[str] | None) -> int:
    from llmforge.allocator import release_freed_memory

    release_freed_memory()
    args = parse(argv)
    _quiet_libraries(getattr(args, "verbose", False))
    settle_offline()  # before anything imports huggingface_hub
    try:
        _check_models(args)
        return args.func(args)
    except UserError as exc:
        print(f"llmforge: error: {exc}", file=sys.stderr)
        return EXIT_USER
    except Stopped as exc:
        print(f"llmforge: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        from llmforge.engine.files import disk_full

        if not disk_full(exc):
            raise
        print(f"llmforge: error: no space left on the disk holding {exc.filename or 'a file llmforge wrote'}. "
              "Free space and run the same command again.", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("llmforge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
