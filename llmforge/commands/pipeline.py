"""`llmforge pipeline`: run a recipe's stages (or the same recipe once per seed, with a table of the seeds).

Exit codes: 0 done, 2 the recipe needs fixing, 3 a stage failed the recipe's `require` gate (its model was not
handed on; the report says why), 75/130 stopped by a signal (run it again to resume).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from llmforge.commands import whole_numbers

EXIT_OK, EXIT_GATE = 0, 3


def run(args: argparse.Namespace) -> int:
    from llmforge.pipeline.spec import load_pipeline

    seeds = whole_numbers(args.seeds, "--seeds", "42,1,2,3", distinct=True) if args.seeds else None
    if seeds is None:
        return _one_pipeline(load_pipeline(args.config, args.overrides), args)  # before torch is imported
    from llmforge.report.seeds import seed_folder, write_seeds_table

    root = load_pipeline(args.config, args.overrides).output_dir
    runs = [load_pipeline(args.config, [*args.overrides, f"seed={seed}",
                                        f"output_dir={seed_folder(root, seed)}"]) for seed in seeds]
    codes = [_one_pipeline(pipeline, args) for pipeline in runs]
    if not args.dry_run:
        print(f"seeds: {write_seeds_table(root, seeds)}")
    return max(codes)


def _one_pipeline(pipeline: Any, args: argparse.Namespace) -> int:
    from llmforge.engine.console import summary
    from llmforge.pipeline.execution import failed_stages, plan, run_pipeline

    print("\n".join(plan(pipeline)), flush=True)
    if args.dry_run:
        for stage in pipeline.stages:
            needs = f" (uses {', '.join(stage.needs)})" if stage.needs else ""
            print(f"{stage.name}: {stage.config.stage} -> {stage.config.output_dir}{needs}")
        return EXIT_OK
    rows = run_pipeline(pipeline, args.force)
    for row in rows:
        print(f"{row['name']}: " + (row["gate"] if row["status"] == "blocked" else
                                    summary(row["status"], row["output_dir"], row["final_metrics"], row["seconds"])))
    print(f"report: {pipeline.output_dir / 'report.md'} (and report.html)")
    if failed := failed_stages(rows):
        print("Held back by the recipe's `require` gates:\n  " + "\n  ".join(failed), file=sys.stderr)
        return EXIT_GATE
    return EXIT_OK
