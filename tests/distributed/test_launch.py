"""Real multi-process runs on CPU (gloo): every strategy matches one process at equal global batch.

Tolerances, calibrated on this CPU over 8 steps: losses agree to ~1e-6 and final weights to ~5e-7
(different thread counts reorder float sums). Bounds: 1e-4 on losses, 1e-5 on weights.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from llmforge.engine.checkpoints import MARKER
from tests.helpers import TINY_PRETRAIN, cli_command, deep_update, final_weights, run_cli, write_recipe

pytestmark = pytest.mark.slow

LOSS_TOLERANCE, WEIGHT_TOLERANCE = 1e-4, 1e-5
SHORT = {"train": {"max_steps": 8, "micro_batch_size": 8}, "checkpoint": {"every_steps": 4, "keep_last": 2},
         "logging": {"every_steps": 1}}
STRATEGIES = {
    "ddp": ["distributed.strategy=ddp"],
    "fsdp": ["distributed.strategy=fsdp"],
    "zero2": ["distributed.strategy=deepspeed", "distributed.zero_stage=2"],
    "zero3": ["distributed.strategy=deepspeed", "distributed.zero_stage=3"],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def two_process(port: int | None = None) -> list[str]:
    """Half the micro-batch on each of two processes: the same global batch as the reference."""
    return ["distributed.nproc_per_node=2", "train.micro_batch_size=4", f"distributed.master_port={port or free_port()}"]


def losses(run: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]


def assert_close_runs(a: Path, b: Path, loss_tolerance: float = LOSS_TOLERANCE,
                      weight_tolerance: float = WEIGHT_TOLERANCE) -> None:
    la, lb = losses(a), losses(b)
    assert len(la) == len(lb) == 8
    assert abs(la[0] - lb[0]) < LOSS_TOLERANCE  # the first step sees the same weights and the same batch
    assert max(abs(x - y) for x, y in zip(la, lb, strict=True)) < loss_tolerance
    wa, wb = final_weights(a), final_weights(b)
    assert wa.keys() == wb.keys()
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < weight_tolerance


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dist")
    return write_recipe(folder, **SHORT)


@pytest.fixture(scope="module")
def runs(recipe) -> dict[str, Path]:
    """Output folders by name; the single-process reference runs first."""
    folder = recipe.parent
    result = run_cli("train", str(recipe), f"output_dir={folder / 'single'}")
    assert result.returncode == 0, result.stderr[-3000:]
    return {"single": folder / "single"}


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_two_processes_match_one(recipe, runs, strategy):
    out = recipe.parent / strategy
    result = run_cli("train", str(recipe), f"output_dir={out}", *two_process(), *STRATEGIES[strategy])
    assert result.returncode == 0, result.stderr[-4000:]
    runs[strategy] = out
    assert_close_runs(runs["single"], out)
    assert (out / "checkpoints" / "checkpoint-8" / MARKER).is_file()
    assert json.loads((out / "run.json").read_text())["config"]["distributed"]["nproc_per_node"] == 2
    # Rank 0 alone writes the logs: one line per step, not one per rank.
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()
            if '"loss"' in x] == list(range(1, 9))


@pytest.mark.parametrize("strategy", ["fsdp", "zero3"])
def test_sharded_strategies_resume_from_their_checkpoint(recipe, runs, strategy):
    if strategy not in runs:
        pytest.skip(f"the {strategy} run failed")
    out = recipe.parent / f"{strategy}-resumed"
    shutil.copytree(runs[strategy] / "checkpoints" / "checkpoint-4", out / "checkpoints" / "checkpoint-4")
    result = run_cli("train", str(recipe), f"output_dir={out}", *two_process(), *STRATEGIES[strategy])
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Resuming from" in result.stderr
    assert losses(out) == losses(runs[strategy])[4:]  # steps 5-8, logged again after the resume
    wa, wb = final_weights(runs[strategy]), final_weights(out)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("strategy", ["fsdp", "zero3"])
def test_sharded_checkpoints_load_safely_and_refuse_a_planted_pickle(runs, strategy, tmp_path):
    """DeepSpeed unpickles its optimizer state with weights_only=False: its real checkpoints pass llmforge's
    check (tensors, plain data and DeepSpeed's own loss-scaler and stage classes), a planted pickle does not."""
    from llmforge.engine.safe_pickles import UnsafePickle, check_pickles
    from tests.faults.harness import Exploit

    if strategy not in runs:
        pytest.skip(f"the {strategy} run failed")
    checkpoint = tmp_path / "checkpoint-8"
    shutil.copytree(runs[strategy] / "checkpoints" / "checkpoint-8", checkpoint)
    check_pickles(checkpoint)
    target = sorted(p for p in checkpoint.rglob("*.pt") if "optim" in p.name)[0]
    canary = tmp_path / "pwned"
    torch.save({"state": Exploit(canary)}, target)
    with pytest.raises(UnsafePickle, match=target.name):
        check_pickles(checkpoint)
    assert not canary.exists()


def test_two_nodes_on_loopback(recipe, runs):
    out = recipe.parent / "two-nodes"
    port = free_port()
    common = [f"output_dir={out}", "distributed.nnodes=2", "distributed.nproc_per_node=1",
              "train.micro_batch_size=4", "distributed.master_addr=127.0.0.1", f"distributed.master_port={port}"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    nodes = [subprocess.Popen(cli_command("train", str(recipe), *common, f"distributed.node_rank={rank}"),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
             for rank in (0, 1)]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert_close_runs(runs["single"], out)


def _workers_of(out: Path) -> list[str]:
    found = subprocess.run(["pgrep", "-f", f"output_dir={out}"], capture_output=True, text=True).stdout
    return found.split()


def test_sigkill_of_the_ddp_launcher_stops_its_workers_and_resumes_exactly(recipe, runs):
    if "ddp" not in runs:
        pytest.skip("the ddp run failed")
    out = recipe.parent / "ddp-killed"
    port = free_port()
    args = cli_command("train", str(recipe), f"output_dir={out}", *two_process(port), *STRATEGIES["ddp"])
    job = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    marker = out / "checkpoints" / "checkpoint-4" / MARKER
    deadline = time.time() + 240
    while not marker.is_file():
        assert job.poll() is None and time.time() < deadline, "the job ended before its first checkpoint"
        time.sleep(0.002)  # kill within milliseconds of checkpoint-4: steps 5-8 are still ahead
    os.kill(job.pid, signal.SIGKILL)  # the launcher only: its workers must not outlive it
    job.wait()
    deadline = time.time() + 10
    while _workers_of(out) and time.time() < deadline:
        time.sleep(0.1)
    assert not _workers_of(out), "orphaned workers kept training after the launcher was killed"
    assert not (out / "final").exists()

    result = run_cli("train", str(recipe), f"output_dir={out}", *two_process(), *STRATEGIES["ddp"])
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Resuming from" in result.stderr
    assert losses(out) == losses(runs["ddp"])
    wa, wb = final_weights(runs["ddp"]), final_weights(out)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_sigterm_to_a_ddp_launcher_checkpoints_every_rank_and_resumes_exactly(recipe, runs):
    """SIGTERM to the launcher (what a scheduler sends): it is forwarded to both workers, which finish the step,
    agree on it, write one complete checkpoint and exit 75; the rerun ends with the uninterrupted weights."""
    from llmforge.engine.stopped import EXIT_PREEMPTED

    if "ddp" not in runs:
        pytest.skip("the ddp run failed")
    out = recipe.parent / "ddp-preempted"
    args = cli_command("train", str(recipe), f"output_dir={out}", *two_process(), *STRATEGIES["ddp"],
                       "checkpoint.every_steps=100")
    job = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not ((out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text().count('"loss"') >= 2):
        assert job.poll() is None and time.time() < deadline, "the job ended before the signal"
        time.sleep(0.01)
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=120) == EXIT_PREEMPTED, job.stderr.read()[-3000:]
    saved = [p for p in (out / "checkpoints").iterdir() if (p / MARKER).is_file()]
    assert len(saved) == 1 and not (out / "final").exists()
    result = run_cli("train", str(recipe), f"output_dir={out}", *two_process(), *STRATEGIES["ddp"],
                     "checkpoint.every_steps=100")
    assert result.returncode == 0 and "Resuming from" in result.stderr, result.stderr[-4000:]
    assert losses(out) == losses(runs["ddp"])
    wa, wb = final_weights(runs["ddp"]), final_weights(out)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_workers_user_error_keeps_exit_code_2(recipe):
    result = run_cli("train", str(recipe), f"output_dir={recipe.parent / 'bad'}", *two_process(),
                     "data.train.0.name=null", "data.train.0.options={}",
                     f"data.train.0.path={recipe.parent / 'missing.jsonl'}")
    assert result.returncode == 2
    assert "file not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_accelerate_launch_runs_the_recipe_unchanged(recipe, runs):
    out = recipe.parent / "accelerate"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
               "--multi_gpu", "--main_process_port", str(free_port()), "-m", "llmforge", "train", str(recipe),
               f"output_dir={out}", "train.micro_batch_size=4"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert_close_runs(runs["single"], out)


# Packed SFT rows are concatenated padding-free per micro-batch, and a different micro-batch shape changes
# the sums at ~1e-3 even in one process. So the one-process reference keeps the micro-batch of 4 rows
# and accumulates 2 of them: the same global batch, split the same way (observed difference: 0.0).
SFT = {"stage": "sft", "model": {"name": "tiny-qwen2"},
       "data": {"train": [{"name": "arithmetic-sft", "options": {"num_samples": 600}}],
                "eval": [{"name": "arithmetic-sft", "split": "test", "options": {"num_samples": 16}}], "max_length": 64},
       **SHORT}
SFT_METHODS = {"full": {}, "lora": {"adapter": {"type": "lora", "r": 8, "alpha": 16}}}


def single_process_runs(folder: Path, bases: dict[str, dict], *overrides: str) -> dict[str, Path]:
    """One-process reference runs, NAME-single, of each recipe; returns the recipes by name."""
    recipes = {}
    for name, base in bases.items():
        recipe = write_recipe(folder, name=f"{name}.yaml", base=base, output_dir=str(folder / f"{name}-single"))
        result = run_cli("train", str(recipe), *overrides)
        assert result.returncode == 0, result.stderr[-3000:]
        recipes[name] = recipe
    return recipes


def two_process_run(recipe: Path, name: str, strategy: str) -> Path:
    out = recipe.parent / f"{name}-{strategy}"
    result = run_cli("train", str(recipe), f"output_dir={out}", *two_process(), *STRATEGIES[strategy])
    assert result.returncode == 0, result.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def sft_single(tmp_path_factory) -> dict[str, Path]:
    bases = {method: deep_update(SFT, changes) for method, changes in SFT_METHODS.items()}
    return single_process_runs(tmp_path_factory.mktemp("sft-dist"), bases, "train.micro_batch_size=4",
                               "train.grad_accum_steps=2")


# each method under one strategy (the pretraining tests above cover every strategy)
@pytest.mark.parametrize(("method", "strategy"), [("full", "fsdp"), ("lora", "ddp")])
def test_sft_two_processes_match_one(sft_single, method, strategy):
    recipe = sft_single[method]
    assert_close_runs(recipe.parent / f"{method}-single", two_process_run(recipe, method, strategy))


# The alignment stages under the launcher: rm, dpo and kto match one process at the same global batch; grpo
# samples on each rank with its own generator, so its two-process run is checked for completing its steps.
# Observed for rm under DDP and FSDP: step 1 identical, then drift to 7e-4 in loss and 1.4e-3 in weights by
# step 8 (lr 3e-3, padded pairs split 4+4 instead of 8). With SGD instead of AdamW the weights agree to 1.8e-6
# after 8 steps while the losses still differ by 7e-4 (one pair's near-zero margin flips sign at step 5): the
# updates agree, and the loss differences are float noise from the per-rank padding shapes. With AdamW the
# weights drift further, likely its normalisation giving near-zero gradients full-size steps (not checked).
# Hence a looser bound for the alignment stages than for the LM stages.
ALIGNMENT_LOSS_TOLERANCE, ALIGNMENT_WEIGHT_TOLERANCE = 3e-3, 5e-3
PAIRS = {"train": [{"name": "arithmetic-pref", "options": {"num_samples": 200}}],
         "eval": [{"name": "arithmetic-pref", "split": "test", "options": {"num_samples": 16}}], "max_length": 64}
ALIGNMENT = {
    "rm": {"stage": "rm", "data": PAIRS},
    "dpo": {"stage": "dpo", "data": PAIRS},
    "kto": {"stage": "kto", "data": PAIRS},
    "grpo": {"stage": "grpo", "data": {"train": [{"name": "arithmetic-prompts", "options": {"num_samples": 200}}]},
             "grpo": {"num_generations": 8, "max_new_tokens": 4, "reward_functions": ["arithmetic"]}},
}


@pytest.fixture(scope="module")
def alignment_single(tmp_path_factory) -> dict[str, Path]:
    bases = {stage: {**TINY_PRETRAIN, **changes, **SHORT} for stage, changes in ALIGNMENT.items()}
    return single_process_runs(tmp_path_factory.mktemp("align-dist"), bases)


@pytest.mark.parametrize(("stage", "strategy"), [("rm", "ddp"), ("dpo", "fsdp"), ("kto", "ddp"), ("grpo", "fsdp")])
def test_alignment_stages_two_processes(alignment_single, stage, strategy):
    recipe = alignment_single[stage]
    out = two_process_run(recipe, stage, strategy)
    if stage == "grpo":
        reference = final_weights(recipe.parent / "grpo-single")
        assert len(losses(out)) == 8 and final_weights(out).keys() == reference.keys()
    else:
        assert_close_runs(recipe.parent / f"{stage}-single", out, ALIGNMENT_LOSS_TOLERANCE, ALIGNMENT_WEIGHT_TOLERANCE)


# PPO samples on each rank, so two processes do not replay one process's samples; but every strategy of two
# processes samples the same and must then train the same. Observed: DDP, FSDP, ZeRO-2 and ZeRO-3 give
# identical losses and bit-identical final weights over 8 steps (generation under ZeRO-3 gathers the policy).
PPO = {**TINY_PRETRAIN, **SHORT, "stage": "ppo",
       "data": {"train": [{"name": "arithmetic-prompts", "options": {"num_samples": 200}}]},
       "ppo": {"rollout_batch_size": 8, "max_new_tokens": 4, "reward_functions": ["arithmetic"]}}


@pytest.fixture(scope="module")
def ppo_ddp(tmp_path_factory) -> tuple[Path, Path]:
    recipe = write_recipe(tmp_path_factory.mktemp("ppo-dist"), name="ppo.yaml", base=PPO)
    return recipe, two_process_run(recipe, "ppo", "ddp")


@pytest.mark.parametrize("strategy", ["zero3"])  # FSDP gave the same bit-identical result; ZeRO-3 is the harder case
def test_ppo_trains_the_same_under_every_strategy(ppo_ddp, strategy):
    recipe, ddp = ppo_ddp
    out = two_process_run(recipe, "ppo", strategy)
    assert len(losses(out)) == 8
    assert_close_runs(ddp, out)
