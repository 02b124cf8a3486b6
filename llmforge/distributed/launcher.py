"""Relaunch `llmforge train` under torchrun when the recipe asks for more than one process.

The launch goes through torch's elastic launcher (the API behind `torchrun`) with the
same arguments `--dry-run` prints, so the printed command is the command that runs.
Going through the API rather than a torchrun subprocess lets a worker's user error keep
exit code 2, without torchrun's own traceback.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import sys
from pathlib import Path

import yaml

from llmforge.config.schema import RunConfig
from llmforge.distributed import launched_externally
from llmforge.distributed.state import backend
from llmforge.distributed.strategy import deepspeed_config, fsdp_arguments
from llmforge.engine.stopped import EXIT_INTERRUPTED, EXIT_PREEMPTED
from llmforge.errors import UserError


def needs_launch(cfg: RunConfig) -> bool:
    """More than one process, or a sharding strategy (which needs a process group even for one GPU)."""
    dist = cfg.distributed
    return not launched_externally() and (dist.nproc_per_node > 1 or dist.nnodes > 1 or dist.strategy != "ddp")


def torchrun_options(cfg: RunConfig) -> list[str]:
    dist = cfg.distributed
    if dist.node_rank >= dist.nnodes:
        raise UserError(f"distributed.node_rank={dist.node_rank} must be below distributed.nnodes={dist.nnodes}.")
    return [f"--nnodes={dist.nnodes}", f"--nproc_per_node={dist.nproc_per_node}", f"--node_rank={dist.node_rank}",
            f"--master_addr={dist.master_addr}", f"--master_port={dist.master_port}"]


def worker_arguments(config_path: str, overrides: list[str]) -> list[str]:
    return ["-m", "llmforge", "train", config_path, *overrides]


def launch_command(cfg: RunConfig, config_path: str, overrides: list[str]) -> str:
    return shlex.join(["torchrun", *torchrun_options(cfg), *worker_arguments(config_path, overrides)])


def layer_class_hint(cfg: RunConfig) -> str | None:
    """The decoder layer FSDP would wrap, found without loading weights where possible."""
    from llmforge.registry import family_for, resolve_source

    source = resolve_source(cfg.model.name)
    if source.preset is not None:
        return family_for(source.preset.model_type).decoder_layer
    config_file = Path(source.location) / "config.json"
    if config_file.is_file():
        return family_for(json.loads(config_file.read_text()).get("model_type", "")).decoder_layer or None
    return None


def describe_launch(cfg: RunConfig, config_path: str, overrides: list[str]) -> str:
    """What `--dry-run` prints: the command, then the generated strategy config."""
    dist = cfg.distributed
    lines = []
    if needs_launch(cfg):
        lines += ["# launch (run this on every node, with its own distributed.node_rank):",
                  launch_command(cfg, config_path, overrides)]
    else:
        lines += ["# single process (or already inside a launcher):",
                  shlex.join(["llmforge", "train", config_path, *overrides])]
    lines.append(f"# strategy: {dist.strategy}, backend: {backend()}, world size: {dist.nnodes * dist.nproc_per_node}")
    if dist.strategy == "deepspeed":
        lines += ["# DeepSpeed config:", json.dumps(deepspeed_config(cfg), indent=2)]
    elif dist.strategy == "fsdp":
        lines += ["# FSDP (transformers TrainingArguments fsdp / fsdp_config):",
                  yaml.safe_dump(fsdp_arguments(cfg, layer_class_hint(cfg)), sort_keys=False).rstrip()]
    return "\n".join(lines)


def launch(cfg: RunConfig, config_path: str, overrides: list[str]) -> int:
    """Run the workers of this node; returns the exit code llmforge should end with."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    dist = cfg.distributed
    torchrun_options(cfg)  # validates
    # Workers print their own errors; the agent's failure report would only repeat them.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    if "OMP_NUM_THREADS" not in os.environ and dist.nproc_per_node > 1:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // dist.nproc_per_node))
    config = LaunchConfig(
        min_nodes=dist.nnodes,
        max_nodes=dist.nnodes,
        nproc_per_node=dist.nproc_per_node,
        run_id=f"llmforge-{dist.master_port}",
        rdzv_backend="static",
        rdzv_endpoint=f"{dist.master_addr}:{dist.master_port}",
        rdzv_configs={"rank": dist.node_rank, "timeout": 900},
        max_restarts=0,
        monitor_interval=0.5,
    )
    # torch's elastic agent forwards TERM/INT/HUP/QUIT to the workers; SIGUSR1 too (engine/preemption.py)
    os.environ.setdefault("TORCHELASTIC_SIGNALS_TO_HANDLE", "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1")
    try:
        elastic_launch(config, sys.executable)(*worker_arguments(config_path, overrides))
    except ChildFailedError as exc:
        codes = {failure.exitcode for failure in exc.failures.values()}
        for kept in (2, EXIT_PREEMPTED, EXIT_INTERRUPTED):  # a user error, or a checkpoint written on a signal
            if kept in codes:
                return kept
        return 1
    except SignalException as exc:  # the launcher itself was signalled; the workers saved and left
        return EXIT_INTERRUPTED if exc.sigval == signal.SIGINT else EXIT_PREEMPTED
    return 0
