"""`llmforge slurm`: an sbatch script that runs the same recipe on N nodes.

One task per node; each runs `llmforge train` with its node rank, which launches that
node's GPU workers. SLURM sends SIGUSR1 two minutes before the time limit (`--signal`): every
worker finishes its step, writes a checkpoint and exits with code 75, and the script requeues
the job, which resumes from that checkpoint because a run started again resumes by default.
"""

from __future__ import annotations

import shlex

from llmforge.config.schema import RunConfig
from llmforge.engine.stopped import EXIT_PREEMPTED
from llmforge.errors import UserError


def sbatch_script(cfg: RunConfig, config_path: str, overrides: list[str], nodes: int, gpus_per_node: int,
                  partition: str | None = None, time_limit: str | None = None, port: int | None = None,
                  signal_seconds: int = 120) -> str:
    if nodes < 1 or gpus_per_node < 1:
        raise UserError("--nodes and --gpus-per-node must be at least 1.")
    port = port or cfg.distributed.master_port
    header = [
        "#!/bin/bash",
        f"#SBATCH --job-name=llmforge-{cfg.stage}",
        f"#SBATCH --nodes={nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --gpus-per-node={gpus_per_node}",
        "#SBATCH --exclusive",
        "#SBATCH --requeue",
        f"#SBATCH --signal=USR1@{signal_seconds}",  # checkpoint and stop before the time limit
        "#SBATCH --output=slurm-%x-%j.out",  # the folder must exist before the job starts: use the submit dir
    ]
    if partition:
        header.append(f"#SBATCH --partition={partition}")
    if time_limit:
        header.append(f"#SBATCH --time={time_limit}")
    fixed = [config_path, *overrides, f"distributed.nnodes={nodes}", f"distributed.nproc_per_node={gpus_per_node}",
             f"distributed.master_port={port}"]
    command = " ".join(["llmforge", "train", *map(shlex.quote, fixed),
                        '"distributed.master_addr=$MASTER_ADDR"', '"distributed.node_rank=$SLURM_NODEID"'])
    body = [
        "",
        "set -euo pipefail",
        f"mkdir -p {shlex.quote(cfg.output_dir)}",
        # sed reads the whole list (head would exit early, and under pipefail scontrol's SIGPIPE kills the job)
        'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)',
        "export MASTER_ADDR",
        "# Each node runs the recipe once; llmforge starts that node's workers under torchrun.",
        "code=0",
        f"srun --kill-on-bad-exit=1 --ntasks-per-node=1 bash -c {shlex.quote(command)} || code=$?",
        f'if [ "$code" = {EXIT_PREEMPTED} ]; then  # stopped on the signal after a checkpoint: run again',
        '    scontrol requeue "$SLURM_JOB_ID"',
        "fi",
        'exit "$code"',
    ]
    return "\n".join(header + body) + "\n"
