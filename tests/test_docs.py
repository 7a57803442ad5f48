"""The README and --help are part of the product: every command is documented and has examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from sesstool.cli.main import COMMANDS, cli

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_help_with_examples_and_is_in_the_readme(name: str) -> None:
    import click

    command = cli.get_command(click.Context(cli), name)
    assert command is not None, f"{name} is not importable"
    help_text = command.help or ""
    assert help_text.strip(), f"{name} has no help"
    assert "Examples:" in help_text, f"{name} --help has no examples"
    assert f"sesstool {name}" in README, f"README never shows `sesstool {name}`"


def test_readme_names_the_two_setup_commands_and_ci_calls_the_test_one() -> None:
    assert "scripts/demo" in README and "scripts/test" in README
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "scripts/test" in ci
