"""`llmforge bench`: its options, and the run that measures every group into one temporary folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llmforge.bench import DEFAULT_GROUPS, GROUPS
from llmforge.errors import UserError

EXAMPLE = ("llmforge bench --quick --json bench.json\n  llmforge bench --quick --only overhead,online\n"
           "  llmforge bench --only sizes --json sizes.json    # every stage at 135M, 0.5B and 1.2B")
MIN_STEPS = 3


def add_arguments(bench: argparse.ArgumentParser) -> None:
    bench.add_argument("--quick", action="store_true", help="the small CPU workload (under 5 minutes on a CPU)")
    bench.add_argument("--only", help=f"comma-separated groups: {','.join(GROUPS)} (default: all but sizes, the "
                       "real-size ladder, about an hour on 2 cores)")
    bench.add_argument("--steps", type=int, help="steps per workload (default: by mode; half are warm-up)")
    bench.add_argument("--json", help="also write every figure to this JSON file")


def run(args: argparse.Namespace) -> int:
    import json
    import tempfile

    from llmforge.bench.suite import run_benchmarks
    from llmforge.bench.tables import render

    groups = tuple(args.only.split(",")) if args.only else DEFAULT_GROUPS
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise UserError(f"--only {unknown[0]}: not a benchmark group (groups: {', '.join(GROUPS)}).")
    if args.steps is not None and args.steps < MIN_STEPS:
        raise UserError(f"--steps {args.steps}: give at least {MIN_STEPS} (a step of warm-up, then two timed).")
    with tempfile.TemporaryDirectory(prefix="llmforge-bench-") as scratch:
        result = run_benchmarks(Path(scratch), quick=args.quick, groups=groups, steps=args.steps)
    text = render(result)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "tables": text}, indent=2))
    if result["failed"]:
        where = f" and the end of each one's output in {args.json}" if args.json else ""
        print(f"llmforge bench: {len(result['failed'])} workload(s) failed: listed under the tables{where}.",
              file=sys.stderr)
        return 1
    return 0
