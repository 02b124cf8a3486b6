"""Generated DeepSpeed/FSDP configs, launch decisions, dry runs and SLURM scripts (no processes)."""

from __future__ import annotations

import json
import subprocess

import pytest

from llmforge.cli import main
from llmforge.config import load_config
from llmforge.distributed.launcher import launch_command, needs_launch
from llmforge.distributed.slurm import sbatch_script
from llmforge.distributed.strategy import deepspeed_config, fsdp_arguments, strategy_arguments
from llmforge.errors import UserError
from tests.helpers import write_recipe


def _cfg(tmp_path, *overrides):
    return load_config(write_recipe(tmp_path), list(overrides))


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_deepspeed_config_follows_recipe(tmp_path, stage):
    ds = deepspeed_config(_cfg(tmp_path, "distributed.strategy=deepspeed", f"distributed.zero_stage={stage}",
                               "distributed.offload=optimizer"))
    zero = ds["zero_optimization"]
    assert zero["stage"] == stage
    assert zero["offload_optimizer"]["device"] == "cpu" and "offload_param" not in zero
    assert ds["train_micro_batch_size_per_gpu"] == "auto" and ds["gradient_clipping"] == "auto"
    assert zero.get("stage3_gather_16bit_weights_on_model_save", False) == (stage == 3)


def test_param_offload_needs_zero3(tmp_path):
    with pytest.raises(UserError, match="zero_stage=3"):
        deepspeed_config(_cfg(tmp_path, "distributed.strategy=deepspeed", "distributed.offload=all"))
    ds = deepspeed_config(_cfg(tmp_path, "distributed.zero_stage=3", "distributed.offload=all"))
    assert ds["zero_optimization"]["offload_param"]["device"] == "cpu"


def test_user_deepspeed_json_replaces_generated(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 1}, "train_micro_batch_size_per_gpu": "auto"}))
    assert deepspeed_config(_cfg(tmp_path, f"distributed.deepspeed_config={path}"))["zero_optimization"] == {
        "stage": 1}
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(UserError, match="not valid JSON"):
        deepspeed_config(_cfg(tmp_path, f"distributed.deepspeed_config={tmp_path / 'bad.json'}"))


def test_fsdp_wraps_the_registry_layer_and_picks_state_dict(tmp_path):
    args = fsdp_arguments(_cfg(tmp_path, "distributed.strategy=fsdp", "distributed.state_dict=full",
                               "distributed.offload=optimizer"), "LlamaDecoderLayer")
    assert args["fsdp"] == "full_shard auto_wrap offload"
    assert args["fsdp_config"]["version"] == 2
    assert args["fsdp_config"]["transformer_layer_cls_to_wrap"] == ["LlamaDecoderLayer"]
    assert args["fsdp_config"]["state_dict_type"] == "FULL_STATE_DICT"


def test_offload_with_ddp_is_refused(tmp_path):
    with pytest.raises(UserError, match="offload applies to strategy fsdp or deepspeed"):
        strategy_arguments(_cfg(tmp_path, "distributed.offload=optimizer"), None)


def test_launch_decision(tmp_path, monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert not needs_launch(_cfg(tmp_path))
    assert needs_launch(_cfg(tmp_path, "distributed.nproc_per_node=2"))
    assert needs_launch(_cfg(tmp_path, "distributed.strategy=fsdp"))  # a process group even for one GPU
    monkeypatch.setenv("LOCAL_RANK", "0")  # inside torchrun / accelerate launch: never relaunch
    assert not needs_launch(_cfg(tmp_path, "distributed.nproc_per_node=2"))


def test_launch_command_and_bad_node_rank(tmp_path):
    cfg = _cfg(tmp_path, "distributed.nproc_per_node=8", "distributed.nnodes=2", "distributed.node_rank=1",
               "distributed.master_addr=10.0.0.1")
    command = launch_command(cfg, "r.yaml", ["train.lr=1e-4"])
    assert command == ("torchrun --nnodes=2 --nproc_per_node=8 --node_rank=1 --master_addr=10.0.0.1 "
                       "--master_port=29500 -m llmforge train r.yaml train.lr=1e-4")
    with pytest.raises(UserError, match="node_rank=2 must be below"):
        launch_command(_cfg(tmp_path, "distributed.nnodes=2", "distributed.node_rank=2"), "r.yaml", [])


@pytest.mark.parametrize("strategy, expected", [("ddp", "backend: gloo"), ("fsdp", "LlamaDecoderLayer"),
                                                ("deepspeed", '"stage": 3')])
def test_dry_run_prints_command_and_config_without_running(tmp_path, capsys, monkeypatch, strategy, expected):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    recipe = write_recipe(tmp_path)
    assert main(["train", str(recipe), "--dry-run", "distributed.nproc_per_node=2",
                 f"distributed.strategy={strategy}", "distributed.zero_stage=3"]) == 0
    out = capsys.readouterr().out
    assert "torchrun --nnodes=1 --nproc_per_node=2" in out and expected in out
    assert not (tmp_path / "run").exists()


def test_slurm_script_runs_the_recipe_on_every_node(tmp_path, capsys):
    recipe = write_recipe(tmp_path)
    assert main(["slurm", str(recipe), "--nodes", "4", "--gpus-per-node", "8", "--time", "1:00:00",
                 "train.lr=1e-4"]) == 0
    script = capsys.readouterr().out
    assert "#SBATCH --nodes=4" in script and "#SBATCH --gpus-per-node=8" in script
    assert "#SBATCH --requeue" in script and "#SBATCH --time=1:00:00" in script
    assert "distributed.nnodes=4 distributed.nproc_per_node=8" in script
    assert '"distributed.node_rank=$SLURM_NODEID"' in script and "train.lr=1e-4" in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def test_slurm_script_is_executable_by_bash_with_a_local_srun(tmp_path):
    """Run the generated script with stand-ins for scontrol/srun that print what each node would run."""
    cfg = _cfg(tmp_path)
    script = tmp_path / "job.sh"
    script.write_text(sbatch_script(cfg, "r.yaml", [], nodes=2, gpus_per_node=1))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Many lines, written slowly: a reader that stops after the first line would SIGPIPE it.
    (bin_dir / "scontrol").write_text("#!/bin/bash\necho node-a\nfor i in $(seq 2 200); do echo node-$i; done\n")
    # srun: run the task once per node, with that node's SLURM_NODEID, echoing instead of training.
    (bin_dir / "srun").write_text('#!/bin/bash\nshift 2\nfor id in 0 1; do SLURM_NODEID=$id "$@"; done\n')
    (bin_dir / "llmforge").write_text('#!/bin/bash\necho "$@"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_JOB_NODELIST": "node-[a-b]"}
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, cwd=tmp_path)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2, result.stderr
    for rank, line in enumerate(lines):
        assert f"distributed.node_rank={rank}" in line and "distributed.master_addr=node-a" in line


def test_slurm_script_requeues_a_job_stopped_on_its_signal(tmp_path):
    """SLURM's SIGUSR1 two minutes before the limit: llmforge checkpoints and exits 75, the script requeues."""
    script = tmp_path / "job.sh"
    script.write_text(sbatch_script(_cfg(tmp_path), "r.yaml", [], nodes=1, gpus_per_node=1))
    assert "#SBATCH --signal=USR1@120" in script.read_text()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text('#!/bin/bash\nif [ "$1" = requeue ]; then echo "requeued $2"; else echo n1; fi\n')
    (bin_dir / "srun").write_text("#!/bin/bash\nexit 75\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_JOB_NODELIST": "n1", "SLURM_JOB_ID": "42"}
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 75 and "requeued 42" in result.stdout
