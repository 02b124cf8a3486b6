"""What the fault-harness tests share: the 20-step recipe, weight comparison, exploit pickles, exit-2 checks."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch

from llmforge.cli import main
from llmforge.engine import checkpoints
from tests.helpers import final_weights

TWENTY = {"train": {"max_steps": 20, "scheduler": "constant", "warmup_ratio": 0.0},
          "checkpoint": {"every_steps": 10, "keep_last": 3}, "logging": {"every_steps": 5},
          "eval": {"every_steps": 10}}


def same_weights(a: Path, b: Path) -> bool:
    x, y = final_weights(a), final_weights(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


class Exploit:
    """A pickle that runs code when loaded: it creates a file (where a real attack would call os.system)."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self):
        import os

        return os.mkdir, (str(self.canary),)


def plant(file: Path, canary: Path) -> None:
    """Replace a checkpoint file by an exploit, in both of torch's formats, and re-mark the checkpoint so the
    checksums match (an attacker who can write the folder can rewrite the marker too)."""
    if file.suffix == ".pkl" or file.name.endswith(".metadata"):
        file.write_bytes(pickle.dumps(Exploit(canary)))
    else:
        torch.save({"state": Exploit(canary)}, file)
    checkpoint = next(p for p in file.parents if checkpoints.PATTERN.match(p.name))
    marker = checkpoints.read_marker(checkpoint)
    checkpoints.mark_complete(checkpoint, marker["step"], marker.get("metrics_offset"))


def fails(capsys, *argv: str) -> str:
    """Run `llmforge ARGV`; it must exit 2 with one error message and no traceback. Returns the message."""
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, err[-3000:]
    assert "Traceback" not in err and err.count("llmforge: error:") == 1, err[-3000:]
    return err


def jsonl(path, rows) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)
