"""The command line as a newcomer meets it: --help says what llmforge is, shows examples, explains every option."""

from __future__ import annotations

import argparse

from llmforge.cli import build_parser
from tests.helpers import run_cli


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


def test_help_does_not_wait_for_torch():
    """`llmforge --help` answers at once: building the parser imports neither torch nor transformers (a
    command imports them when it runs; validating a recipe still does, through the stages' declarations)."""
    import subprocess
    import sys

    probe = ("import sys; from llmforge.cli import build_parser; build_parser(); "
             "print(sorted({'torch', 'transformers', 'peft'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
