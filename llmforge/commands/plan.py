"""`llmforge plan RECIPE`: the predicted peak memory per process, term by term, on the device it will run on
(or on a GPU of a given size), and whether it fits."""

from __future__ import annotations

import argparse
import json

from llmforge.errors import UserError

EXAMPLE = ("llmforge plan configs/sft/tiny-lora.yaml model.name=qwen2.5-0.5b data.max_length=2048\n"
           "  llmforge plan configs/sft/llama3-8b-lora.yaml --gpu 24GiB    # on paper, for a 24 GiB GPU")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML recipe (of a training stage)")
    p.add_argument("overrides", nargs="*", metavar="key.path=value", help="override recipe keys")
    p.add_argument("--gpu", metavar="SIZE", help="plan for a GPU with this much memory (e.g. 80GiB) instead of "
                   "the device here")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def run(args: argparse.Namespace) -> int:
    from llmforge.config import load_config

    cfg = load_config(args.config, args.overrides)
    from llmforge.memory import plan
    from llmforge.memory.advice import changes_that_fit
    from llmforge.memory.device import Budget
    from llmforge.memory.render import as_json, gib, lines
    from llmforge.units import parse_size

    device, available = ("cuda", Budget(parse_size(args.gpu, "--gpu"), f"a {args.gpu} GPU")) if args.gpu else (
        None, None)
    planned = plan(cfg, device, available)
    if planned is None:
        raise UserError(f"No memory plan for {args.config}: stage {cfg.stage} trains no model, or the configuration "
                        f"of '{cfg.model.name}' cannot be read here (a hub model that is not cached).")
    changes = [] if planned.fits else changes_that_fit(cfg, planned.budget, planned.estimate.device)
    if args.json:
        print(json.dumps({**as_json(planned), "changes_that_fit": [
            {"overrides": list(c.overrides), "needed_bytes": c.needed} for c in changes]}, indent=2))
        return 0
    print("\n".join(lines(cfg, planned)))
    if not planned.fits:
        print("  does not fit. Changes that fit: " + ("; ".join(f"{c} ({gib(c.needed)})" for c in changes)
                                                     or "none of those tried"))
    return 0
