"""The Dockerfile, checked where no Docker engine runs: hadolint's rules, and what its header promises."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

DOCKERFILE = Path(__file__).resolve().parents[1] / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [(line.split()[0].upper(), line.split(None, 1)[1]) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint installs with the dev extras on x86_64 Linux")
def test_hadolint_finds_nothing():
    result = subprocess.run(["hadolint", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_torch_is_pinned_and_installed_before_the_stack():
    steps = instructions()
    torch_arg = next(value for kind, value in steps if kind == "ARG" and value.startswith("TORCH_SPEC="))
    assert re.fullmatch(r"TORCH_SPEC=torch==\d+\.\d+\.\d+", torch_arg)
    runs = [value for kind, value in steps if kind == "RUN"]
    torch_step = next(i for i, v in enumerate(runs) if "TORCH_SPEC" in v)
    stack_step = next(i for i, v in enumerate(runs) if "requirements.txt" in v)
    assert torch_step < stack_step


def test_dependencies_are_a_layer_below_the_code():
    """Only pyproject.toml reaches the image before the dependency install, so a code change reuses it."""
    steps = instructions()
    install = next(i for i, (kind, value) in enumerate(steps) if kind == "RUN" and "requirements.txt" in value)
    copied_before = [value for kind, value in steps[:install] if kind == "COPY"]
    assert copied_before == ["pyproject.toml README.md ./"]
    assert any(kind == "COPY" and value.startswith("llmforge") for kind, value in steps[install:])


def test_runs_as_a_user_and_runs_what_the_header_says():
    steps = instructions()
    users = [value for kind, value in steps if kind == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    cmd = json.loads(next(value for kind, value in reversed(steps) if kind == "CMD"))
    assert cmd == ["llmforge", "pipeline", "configs/pipelines/tiny-rlhf.yaml"]
    header = "\n".join(line for line in DOCKERFILE.read_text().splitlines() if line.startswith("#"))
    assert "demo:" in header and "docker run --rm" in header
    assert not any(kind == "FROM" and "cuda" in value for kind, value in steps)
