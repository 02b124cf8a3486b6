"""Fault harness, the disk: a full disk mid-run and a read-only output folder.

A small tmpfs is mounted where the test may (root on Linux); elsewhere a full disk is simulated by making
the weights writer raise ENOSPC, and a read-only folder by permissions.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

from llmforge.config import load_config
from llmforge.engine import checkpoints
from llmforge.errors import UserError
from llmforge.stages import run as run_stage
from tests.faults.harness import TWENTY, same_weights
from tests.helpers import run_cli, write_recipe


def mount_tmpfs(folder: Path, size: str, read_only: bool = False) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    except OSError:
        return False
    return done.returncode == 0


def unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture
def reference(tmp_path) -> Path:
    (tmp_path / "ref").mkdir()
    result = run_cli("train", str(write_recipe(tmp_path / "ref", **TWENTY)))
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path / "ref" / "run"


def test_a_full_disk_stops_with_one_message_and_resumes_once_space_is_freed(tmp_path, reference):
    """The disk fills while the second checkpoint is written: exit 2, one message naming the folder and the
    space a checkpoint takes, no traceback, run.json says failed, checkpoint-10 is kept; with space again the
    same command resumes to the uninterrupted run's weights."""
    disk = tmp_path / "disk"
    if not mount_tmpfs(disk, "14m"):
        pytest.skip("cannot mount a tmpfs here; test_a_simulated_full_disk covers the same path")
    try:
        recipe = write_recipe(tmp_path, **TWENTY, output_dir=str(disk / "run"))
        result = run_cli("train", str(recipe))
        assert result.returncode == 2, result.stderr[-3000:]
        assert "Traceback" not in result.stderr and result.stderr.count("llmforge: error:") == 1
        assert f"The disk holding {disk / 'run'} is full" in result.stderr and "MiB" in result.stderr
        assert "checkpoint-10, is kept" in result.stderr
        assert json.loads((disk / "run" / "run.json").read_text())["status"] == "failed"
        assert [p.name for p in checkpoints.complete_checkpoints(disk / "run" / "checkpoints")] == ["checkpoint-10"]
        subprocess.run(["mount", "-o", "remount,size=200m", str(disk)], check=True)
        again = run_cli("train", str(recipe))
        assert again.returncode == 0, again.stderr[-3000:]
        assert same_weights(reference, disk / "run")
    finally:
        unmount(disk)


def test_a_simulated_full_disk_is_a_user_error(tmp_path, monkeypatch):
    """Wherever no tmpfs can be mounted: torch.save raising ENOSPC while the second checkpoint's optimizer
    state is written (as it does on a full disk) takes the same path: a UserError naming the folder,
    run.json failed, the last good checkpoint kept."""
    import torch

    real_save = torch.save

    def filling_up(obj, f, *args, **kwargs):
        if "checkpoint-20" in str(f):
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", filling_up)
    with pytest.raises(UserError, match="is full") as caught:
        run_stage(load_config(write_recipe(tmp_path, **TWENTY)))
    assert "checkpoint-10, is kept" in str(caught.value)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"


def test_a_read_only_output_dir_is_a_user_error(tmp_path):
    folder = tmp_path / "readonly"
    if os.geteuid() == 0:  # root writes through permissions: only a read-only mount stops it
        if not mount_tmpfs(folder, "1m", read_only=True):
            pytest.skip("root without a read-only mount")
    else:
        folder.mkdir()
        folder.chmod(0o555)
    try:
        result = run_cli("train", str(write_recipe(tmp_path, output_dir=str(folder / "run"))))
        assert result.returncode == 2, result.stderr[-2000:]
        assert "cannot write in" in result.stderr and str(folder) in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        if os.geteuid() == 0:
            unmount(folder)
        else:
            folder.chmod(0o755)


def test_a_full_datasets_cache_during_eval_is_named_with_the_fix(tmp_path):
    """lm-eval prepares each task's data in datasets' cache: when that disk is full, `llmforge eval` exits 2
    naming the cache and HF_DATASETS_CACHE, not a misleading 'could not be read', and writes no results."""
    disk = tmp_path / "cache"
    if not mount_tmpfs(disk, "1m"):
        pytest.skip("cannot mount a tmpfs here")
    try:
        with (disk / "fill").open("wb") as fill:
            try:
                while True:
                    fill.write(b"\0" * 65536)
                    fill.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        out = tmp_path / "evals"
        result = run_cli("eval", "tiny-llama", "--tasks", "llmforge_arithmetic", "--limit", "2", "--out", str(out),
                         env={"HF_DATASETS_CACHE": str(disk / "datasets")}, timeout=300)
        assert result.returncode == 2, result.stderr[-3000:]
        assert "Traceback" not in result.stderr and f"datasets cache ({disk / 'datasets'})" in result.stderr
        assert "HF_DATASETS_CACHE" in result.stderr and not out.exists()
    finally:
        unmount(disk)
