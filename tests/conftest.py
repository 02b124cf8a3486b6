"""Test isolation: a private data cache, no hub access, small thread counts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The learning bounds in tests/stages were measured in-process with two torch threads, and a thread count is
# part of what decides float results: training in the test process keeps two. Under pytest -n 2 the commands
# the tests start as subprocesses (resume, fault and launcher tests, which compare runs with each other) take
# one thread each, so two workers share two cores without crowding them; helpers.run_cli(threads=2) where a
# subprocess's figure is compared with an in-process one.
CALIBRATED_THREADS = 2
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # idle threads sleep instead of spinning on a shared core
    import torch

    torch.set_num_threads(CALIBRATED_THREADS)

# Tests that share an expensive fixture run on one worker (pytest -n 2 --dist loadgroup, as scripts/test.sh
# runs), so it is built once: every test on the session's trained models (one group, so only one worker trains
# with two threads at a time), and each module whose tests share module-scoped fixtures (and what they leave
# in them). xdist's groups need pytest < 9 (pyproject.toml).
TRAINED = {"pretrained", "sft_full", "sft_mid", "sft_short", "sft_lora"}

# The longest groups first, so that the two workers end together (the rest fills in behind them).
FIRST = ("trained", "tests.distributed.test_launch")


def pytest_itemcollected(item):
    """Mark the item's group as it is collected (before xdist reads the marks in its collection hook)."""
    names = getattr(item, "fixturenames", ())
    group = "trained" if TRAINED & set(names) else None
    if group is None:
        defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        shared = any(d.scope == "module" and d.baseid and d.baseid in item.nodeid
                     for name in names for d in defs.get(name, ())[-1:])
        group = item.module.__name__ if shared else None
    if group is not None:
        item.add_marker(pytest.mark.xdist_group(group))


# The worker that trains the session's models trains in-process on two threads, and each of its steps waits for
# the slower thread: a thread of the other worker on the same core made those models take 2.2x as long (sft_full:
# 143 s alone, 321 s in the suite). Every other test runs at a lower priority (niceness 5: about a quarter of a
# core against the training's three quarters, not so little that a subprocess's timeout comes near), so the
# training mostly has the cores while it runs and the other worker's tests use what it leaves.
OTHER_TESTS_NICENESS = 5


def pytest_runtest_setup(item):
    marker = item.get_closest_marker("xdist_group")
    trained = marker is not None and marker.args[0] == "trained"
    if os.environ.get("PYTEST_XDIST_WORKER") and not trained and os.nice(0) < OTHER_TESTS_NICENESS:
        os.nice(OTHER_TESTS_NICENESS - os.nice(0))  # once: a worker cannot raise its priority again


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    def rank(item):
        marker = item.get_closest_marker("xdist_group")
        return FIRST.index(marker.args[0]) if marker and marker.args[0] in FIRST else len(FIRST)

    items.sort(key=rank)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    os.environ["LLMFORGE_CACHE"] = str(tmp_path_factory.mktemp("llmforge-cache"))
    os.environ["HF_DATASETS_CACHE"] = str(tmp_path_factory.mktemp("hf-datasets"))
    yield


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory) -> Path:
    """The tiny pretrained model (300 steps, ~40 s): the base of the SFT tests."""
    from llmforge.config import load_config
    from llmforge.stages import run as run_stage
    from tests.helpers import write_recipe

    folder = tmp_path_factory.mktemp("base")
    recipe = write_recipe(folder, output_dir=str(folder / "pretrain"), data={
        "train": [{"name": "tinytext"}], "eval": [{"name": "tinytext", "split": "test"}], "max_length": 128},
        train={"max_steps": 300, "micro_batch_size": 16, "lr": 3.0e-3, "warmup_ratio": 0.05},
        checkpoint={"every_steps": 1000})
    run_stage(load_config(recipe))
    return folder / "pretrain"


def _sft_of(pretrained: Path, folder: Path, **changes) -> Path:
    from llmforge.config import load_config
    from llmforge.stages import run as run_stage
    from tests.helpers import TINY_SFT, write_recipe

    recipe = write_recipe(folder, name="sft.yaml", base=TINY_SFT, model={"name": str(pretrained)},
                          output_dir=str(folder / "run"), **changes)
    run_stage(load_config(recipe))
    return folder / "run"


@pytest.fixture(scope="session")
def sft_full(pretrained, tmp_path_factory) -> Path:
    """Full SFT of it on single-digit arithmetic (~1.5 min): the start of the alignment tests."""
    return _sft_of(pretrained, tmp_path_factory.mktemp("sft-full"))


@pytest.fixture(scope="session")
def sft_short(pretrained, tmp_path_factory) -> Path:
    """SFT stopped early (100 steps, ~25 s): it answers 0.3 of the training problems and 0.06 of the
    held-out ones, leaving DPO and GRPO room to show they learn."""
    return _sft_of(pretrained, tmp_path_factory.mktemp("sft-short"), train={"max_steps": 100})


@pytest.fixture(scope="session")
def sft_mid(pretrained, tmp_path_factory) -> Path:
    """SFT stopped half way (150 steps, ~40 s), as the tiny-rlhf pipeline's was on single digits: it answers ~0.45 of the held-out
    problems and samples right answers to most training problems, but not all -- the room DPO and PPO need to
    beat it on held-out exact match."""
    return _sft_of(pretrained, tmp_path_factory.mktemp("sft-mid"), train={"max_steps": 150})



@pytest.fixture(scope="session")
def sft_lora(pretrained, tmp_path_factory) -> Path:
    """LoRA SFT of it (r 16, 300 steps, ~1 min): the adapter of the LoRA tests."""
    return _sft_of(pretrained, tmp_path_factory.mktemp("sft-lora"), adapter={"type": "lora", "r": 16, "alpha": 32})
