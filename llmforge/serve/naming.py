"""The names a server answers for, from its MODEL arguments, without loading anything: `llmforge serve` checks
them (and every model they name) before it imports torch."""

from __future__ import annotations

from pathlib import Path

from llmforge.errors import UserError


def parse_arguments(arguments: list[str], names: list[str]) -> list[tuple[str, str]]:
    """[(name, model)] from the MODEL arguments (NAME=MODEL allowed) and `--name NAME=MODEL` options."""
    pairs: list[tuple[str | None, str]] = []
    for given in [*arguments, *names]:
        name, sep, model = given.partition("=")
        if sep and not Path(given).exists():
            if not name or not model:
                raise UserError(f"'{given}': write NAME=MODEL, e.g. dpo=runs/tiny-rlhf/dpo.")
            pairs.append((name, model))
        else:
            pairs.append((None, given))
    if not pairs:
        raise UserError("name at least one model to serve, e.g. `llmforge serve runs/tiny-rlhf/sft`.")
    folder_names = [Path(model.rstrip("/")).name or model for _, model in pairs]
    resolved = []
    for (name, model), folder in zip(pairs, folder_names, strict=True):
        resolved.append((name or (folder if folder_names.count(folder) == 1 else model), model))
    seen: set[str] = set()
    for name, model in resolved:
        if name in seen:
            raise UserError(f"two models are served as '{name}'; name them apart with --name NAME={model}.")
        seen.add(name)
    return resolved
