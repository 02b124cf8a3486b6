"""Helpers for tests that run llmforge as a user does: recipes on disk, the real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]

# A pretraining run small enough for seconds on a CI core: ~1M params, 64-token blocks.
TINY_PRETRAIN: dict[str, Any] = {
    "stage": "pretrain",
    "seed": 7,
    "model": {"name": "tiny-llama"},
    "data": {
        "train": [{"name": "tinytext", "options": {"num_documents": 400}}],
        "eval": [{"name": "tinytext", "split": "test", "options": {"num_documents": 60}}],
        "max_length": 64,
    },
    "train": {"max_steps": 30, "micro_batch_size": 8, "lr": 3.0e-3, "warmup_ratio": 0.1},
    "checkpoint": {"every_steps": 10, "keep_last": 2},
    "logging": {"every_steps": 5},
}

DIGITS = {"max_operand": 9}
# SFT of the tiny pretrained model on single-digit arithmetic (the start of every alignment test).
TINY_SFT: dict[str, Any] = {
    "stage": "sft",
    "seed": 11,
    "data": {
        "train": [{"name": "arithmetic-sft", "options": {"num_samples": 20000, **DIGITS}}],
        "eval": [{"name": "arithmetic-sft", "split": "test", "options": DIGITS},
                 {"name": "arithmetic-prompts", "split": "test", "options": DIGITS}],
        "max_length": 64,
        # rows in a random order, packed: every batch mixes the task's three prompt templates (grouping by
        # length, the CPU default, would put one template in each batch)
        "packing": True,
    },
    "train": {"max_steps": 300, "micro_batch_size": 32, "lr": 3.0e-3, "warmup_ratio": 0.05},
    "checkpoint": {"every_steps": 100, "keep_last": 1},
    "logging": {"every_steps": 20},
}


def deep_update(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_update(merged[key], value)
        else:
            merged[key] = value
    return merged


def write_recipe(folder: Path, name: str = "recipe.yaml", base: dict | None = None, **changes: Any) -> Path:
    recipe = deep_update(base or TINY_PRETRAIN, changes)
    recipe.setdefault("output_dir", str(folder / "run"))
    path = folder / name
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "llmforge", *args]


TRAINING_LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "deepspeed")


def training_libraries_imported_by(code: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run `code` in a fresh interpreter from the project root; returns the process and which of
    TRAINING_LIBRARIES it imported (what a command that never trains must not wait for)."""
    probe = f"import json, sys\n{code}\nprint(json.dumps(sorted(set({TRAINING_LIBRARIES!r}) & set(sys.modules))))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    return result, json.loads(result.stdout.strip().splitlines()[-1])


def run_cli(*args: str, timeout: float = 300, threads: int | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `llmforge ARGS` in a fresh process and capture its output (with `threads` torch threads when its
    figures are compared with ones computed in the test process: see tests/conftest.py; `env`: more variables)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=timeout, env=env)


def start_run(recipe: Path, *overrides: str) -> subprocess.Popen:
    """`llmforge train RECIPE` in the background, to be killed."""
    return subprocess.Popen(cli_command("train", str(recipe), *overrides), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def kill_when(process: subprocess.Popen, condition, timeout: float = 240, poll: float = 0.002) -> None:
    """SIGKILL `process` as soon as `condition()` holds."""
    deadline = time.time() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"run ended before the kill point:\n{process.stderr.read()[-3000:]}")
        if time.time() > deadline:
            process.kill()
            raise AssertionError("kill point never reached")
        time.sleep(poll)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def checkpoint_complete(run: Path, step: int):
    from llmforge.engine.checkpoints import MARKER

    return lambda: (run / "checkpoints" / f"checkpoint-{step}" / MARKER).is_file()


def final_weights(run: Path) -> dict:
    from safetensors.torch import load_file

    adapter = run / "final" / "adapter_model.safetensors"
    return load_file(adapter if adapter.is_file() else run / "final" / "model.safetensors")


def assert_resumes_exactly(folder: Path, recipe: dict[str, Any], kill_after_checkpoint: int) -> None:
    """SIGKILL a run once a checkpoint is complete, run it again: same final weights as an uninterrupted run."""
    import json

    import torch

    reference = write_recipe(folder, name="ref.yaml", base=recipe, output_dir=str(folder / "ref"))
    result = run_cli("train", str(reference))
    assert result.returncode == 0, result.stderr[-3000:]
    killed = write_recipe(folder, name="killed.yaml", base=recipe, output_dir=str(folder / "killed"))
    kill_when(start_run(killed), checkpoint_complete(folder / "killed", kill_after_checkpoint))
    result = run_cli("train", str(killed))
    assert result.returncode == 0 and "Resuming from" in result.stderr, result.stderr[-3000:]
    a, b = final_weights(folder / "ref"), final_weights(folder / "killed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the summary covers the whole run too, not only the steps after the resume (up to the log's rounding)
    losses = [json.loads((folder / run / "run.json").read_text())["final_metrics"]["train_loss"]
              for run in ("ref", "killed")]
    assert abs(losses[0] - losses[1]) < 1e-3, losses


def metric_lines(run: Path, key: str) -> list[dict[str, Any]]:
    import json

    return [line for line in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if key in line]


def start_accuracy(model: Path | str) -> float:
    """Held-out greedy exact match of a model on the built-in task (single digits), as `llmforge eval` gives it:
    the problems the alignment stages' eval_accuracy is measured on."""
    import json

    result = run_cli("eval", str(model), "--dataset", "arithmetic-prompts", "--split", "test",
                     "--options", *(f"{k}={v}" for k, v in DIGITS.items()), threads=2)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])["eval_accuracy"]


# Recipes and steps several stage tests share.
RM = {
    "stage": "rm",
    "seed": 42,
    "data": {"train": [{"name": "arithmetic-pref", "options": {"num_samples": 16000, **DIGITS}}],
             "eval": [{"name": "arithmetic-pref", "split": "test", "options": DIGITS}], "max_length": 64},
    "adapter": {"type": "lora", "r": 16, "alpha": 32},
    "train": {"max_steps": 1000, "micro_batch_size": 16, "lr": 1.0e-3, "warmup_ratio": 0.05},
    "checkpoint": {"every_steps": 1000},
    "logging": {"every_steps": 50},
}

DPO = {
    "stage": "dpo",
    "seed": 42,
    "data": {"train": [{"name": "arithmetic-pref", "options": {"num_samples": 8000, **DIGITS}}],
             "eval": [{"name": "arithmetic-pref", "split": "test", "options": DIGITS},
                      {"name": "arithmetic-prompts", "split": "test", "options": DIGITS}], "max_length": 64},
    "dpo": {"beta": 0.1, "sft_weight": 1.0},
    "train": {"max_steps": 200, "micro_batch_size": 16, "lr": 5.0e-4, "warmup_ratio": 0.05},
    "checkpoint": {"every_steps": 1000},
    "logging": {"every_steps": 10},
}


def lora_steps(tmp_path: Path, recipe: dict, start: Path) -> tuple[Any, dict]:
    """Three LoRA steps from `start`, logged every step: (the outcome, its first line with rewards)."""
    from llmforge.config import load_config
    from llmforge.stages import run as run_stage

    outcome = run_stage(load_config(write_recipe(
        tmp_path, base=recipe, model={"name": str(start)}, adapter={"type": "lora", "r": 8, "alpha": 16},
        train={"max_steps": 3, "micro_batch_size": 8}, logging={"every_steps": 1}, eval={"max_samples": 8})))
    return outcome, metric_lines(outcome.output_dir, "rewards/chosen")[0]


def quick_resume_recipe(recipe: dict) -> dict:
    """20 steps of the preset on 400 pairs, a checkpoint at 10: a few seconds to SIGKILL and resume."""
    return {**recipe, "model": {"name": "tiny-llama"},
            "data": {**recipe["data"], "train": [{"name": "arithmetic-pref", "options": {"num_samples": 400}}]},
            "train": {"max_steps": 20, "micro_batch_size": 8, "lr": 1.0e-3},
            "checkpoint": {"every_steps": 10}, "logging": {"every_steps": 5}, "eval": {"max_samples": 8}}


def read_wandb_offline(folder: Path) -> list[dict[str, Any]]:
    """Every offline W&B run under `folder`/wandb, as W&B wrote it: {id, group, name, config, history, summary}.

    W&B 0.31 keeps an offline run in one `run-ID.wandb` file: a header (':W&B', 0xBEE1, a version byte), then
    LevelDB-log records (32 KiB blocks; a 7-byte header each: crc32c, length, type full/first/middle/last)
    holding protobuf `Record`s. Read here with W&B's own protobuf classes, nothing else of its internals.
    """
    import json
    import struct

    from wandb.proto import wandb_internal_pb2

    def chunks(data: bytes):
        position, pending = 7, b""
        while position + 7 <= len(data):
            left = 32768 - position % 32768
            if left < 7:
                position += left
                continue
            _, length, kind = struct.unpack("<IHB", data[position:position + 7])
            if length == 0 and kind == 0:
                position += left
                continue
            piece = data[position + 7:position + 7 + length]
            position += 7 + length
            if kind == 1:
                yield piece
            elif kind == 2:
                pending = piece
            elif kind == 3:
                pending += piece
            elif kind == 4:
                yield pending + piece
                pending = b""

    runs = []
    for path in sorted(Path(folder).glob("wandb/offline-run-*/run-*.wandb")):
        run: dict[str, Any] = {"history": [], "config": {}, "summary": {}}
        for raw in chunks(path.read_bytes()):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(raw)
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run.update(id=record.run.run_id, group=record.run.run_group, name=record.run.display_name)
                run["config"].update({i.key: json.loads(i.value_json) for i in record.run.config.update})
            elif kind == "history":
                run["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                       for i in record.history.item})
            elif kind == "config":
                run["config"].update({i.key: json.loads(i.value_json) for i in record.config.update})
            elif kind == "summary":
                run["summary"].update({i.key: json.loads(i.value_json) for i in record.summary.update if i.key})
        runs.append(run)
    return runs


@contextmanager
def json_service(answer: Callable[[dict], Any]) -> Iterator[tuple[str, list[dict]]]:
    """A real HTTP service on 127.0.0.1 answering each JSON POST with ``answer(body)``; yields its URL and the
    bodies it received (a reward service, as users run one)."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append(body)
            reply = json.dumps(answer(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/score", received
    finally:
        server.shutdown()


# a two-stage pipeline that runs in seconds (tests/pipeline): pretrain 6 steps, then SFT 6 steps from it
PIPELINE_PRETRAIN = deep_update(TINY_PRETRAIN, {"train": {"max_steps": 6}, "checkpoint": {"every_steps": 3}})
PIPELINE_SFT = deep_update(TINY_SFT, {"model": {"name": "${pretrain.output}"}, "data": {"eval": []},
                                      "train": {"max_steps": 6, "micro_batch_size": 8},
                                      "checkpoint": {"every_steps": 2, "keep_last": 2}, "logging": {"every_steps": 1}})
