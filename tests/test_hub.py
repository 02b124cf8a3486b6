"""A machine that cannot reach the Hugging Face hub is told so at once, instead of after ~30 s of retries.

The end-to-end cases point HF_ENDPOINT at `hub.invalid` (a name reserved never to resolve) with no
HF_HUB_OFFLINE and no proxy, as on a machine without a network, whatever network the test machine has.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from llmforge.hub import PROXY_VARIABLES, resolves
from tests.helpers import cli_command, write_recipe


def test_a_reserved_name_does_not_resolve_and_localhost_does():
    assert resolves("hub.invalid") is False
    assert resolves("localhost") is True


def without_hub(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE" and k not in PROXY_VARIABLES}
    return {**env, "HF_ENDPOINT": "https://hub.invalid", "PYTHONUNBUFFERED": "1", **extra}


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=120, env=env)


def test_a_hub_model_is_refused_at_once_naming_why(tmp_path):
    result = run("export", "some-org/some-model", str(tmp_path / "out"), env=without_hub())
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "'some-org/some-model'" in result.stderr and "hub.invalid does not resolve" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_hub_dataset_is_refused_at_once_naming_why(tmp_path):
    recipe = write_recipe(tmp_path, data={"train": [{"name": "some-org/some-dataset"}]})
    result = run("train", str(recipe), env=without_hub())
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "some-org/some-dataset" in result.stderr and "hub.invalid does not resolve" in result.stderr


@pytest.mark.parametrize("setting", ["proxy", "switch"])
def test_a_proxy_or_an_explicit_switch_is_left_to_huggingface(tmp_path, setting):
    """Behind a proxy this machine's resolver says nothing about the hub; HF_HUB_OFFLINE=0 is the user's word."""
    extra = {"HTTPS_PROXY": "http://127.0.0.1:9"} if setting == "proxy" else {"HF_HUB_OFFLINE": "0"}
    code = ("import os, llmforge.hub as h; h.settle_offline(); "
            "print(os.environ.get('HF_HUB_OFFLINE'), h.offline_hint() == '')")
    result = subprocess.run([cli_command()[0], "-c", code], capture_output=True, text=True, timeout=60,
                            env=without_hub(**extra))
    assert result.stdout.split() == (["None", "True"] if setting == "proxy" else ["0", "True"])
