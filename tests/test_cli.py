"""The command line as a newcomer meets it: --help says what llmforge is, shows examples, explains every option."""

from __future__ import annotations

import argparse

import pytest

from llmforge.cli import build_parser
from tests.helpers import run_cli, training_libraries_imported_by


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_top_level_help_is_for_users():
    result = run_cli("--help")
    assert result.returncode == 0
    first = result.stdout.split("\n\n")[1]
    assert first.startswith("Pretrain, fine-tune, align") and "thin call" not in result.stdout
    assert "examples:" in result.stdout and "llmforge pipeline configs/pipelines/tiny-rlhf.yaml" in result.stdout


def test_every_subcommand_has_an_example_and_every_option_a_meaning():
    for name, sub in subcommands().items():
        assert sub.epilog and f"llmforge {name}" in sub.epilog, f"{name}: no example line"
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"llmforge {name} {'/'.join(action.option_strings) or action.dest}: no help text"


@pytest.mark.parametrize("argv", [
    None,  # building the parser, as --help does
    ["train", "configs/sft/tiny-lora.yaml", "trian.lr=1e-3"],
    ["pipeline", "configs/pipelines/tiny-rlhf.yaml", "sft.train.lr=fast"],
])
def test_help_and_recipe_errors_do_not_wait_for_torch(argv):
    """`llmforge --help`, and a recipe or pipeline with a typo, answer at once: neither imports torch,
    transformers, TRL or datasets (a command imports them when it runs). Measured on a 2-core EPYC: 0.05 s,
    0.22 s and 0.24 s, against 7.2-7.6 s for either typo when the stages' declarations imported their trainers."""
    call = "from llmforge.cli import build_parser; build_parser()" if argv is None else (
        f"from llmforge.cli import main; assert main({argv!r}) == 2")
    result, imported = training_libraries_imported_by(call)
    assert imported == []
    if argv is not None:
        assert "'trian'" in result.stderr or ("stage 'sft'" in result.stderr and "got 'fast'" in result.stderr)


@pytest.mark.parametrize("argv", [
    ["export", "{runs}/sft-lroa", "{runs}/exported"],
    ["serve", "tuned={runs}/sft-lroa"],
    ["eval", "tiny-llama", "--dataset", "arithmetic-prompts", "--against", "{runs}/sft-lroa"],
])
def test_a_mistyped_model_folder_is_answered_before_torch(argv, tmp_path):
    """A model argument naming a folder that is not there exits 2 with the nearest folder, before the command
    imports torch (it took 3.6-4 s to say so; `runs/x`, relative, took ~33 s of hub retries offline)."""
    run = tmp_path / "runs" / "sft-lora"
    run.mkdir(parents=True)
    (run / "run.json").write_text("{}")
    argv = [part.format(runs=tmp_path / "runs") for part in argv]
    result, imported = training_libraries_imported_by(f"from llmforge.cli import main; assert main({argv!r}) == 2")
    assert imported == [] and f"Did you mean '{run}'?" in result.stderr
