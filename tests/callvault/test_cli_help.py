"""Every command and subcommand answers --help (and so imports cleanly)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from callvault.cli.main import _COMMANDS, cli


def _all_paths() -> list[list[str]]:
    paths: list[list[str]] = [[]]
    ctx = click.Context(cli)
    for name in _COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None, name
        paths.append([name])
        if isinstance(command, click.Group):
            paths += [[name, sub] for sub in command.list_commands(ctx)]
    return paths


@pytest.mark.parametrize("path", _all_paths(), ids=lambda p: " ".join(p) or "callvault")
def test_help(path: list[str]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["nope"])
    assert result.exit_code == 2
