"""Entry point of the ``callvault`` command.

Subcommand modules are imported lazily so ``callvault --help`` stays fast and a broken optional
dependency of one family cannot take the whole CLI down. Every :class:`CallvaultError` becomes a
one-line message on stderr and exit code 3 (click owns 1 and 2 for aborts and usage errors);
tracebacks are for bugs only.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from callvault.errors import CallvaultError
from callvault.settings import Settings, load_settings

#: command name -> "module:attribute" of a click command or group.
_COMMANDS: dict[str, str] = {
    "dev": "callvault.cli.dev:dev",
    "workspace": "callvault.cli.workspace:workspace",
    "topics": "callvault.cli.topics:topics",
    "worker": "callvault.cli.worker:worker",
    "query": "callvault.cli.query:query",
    "demo": "callvault.cli.demo:demo",
    "trunk": "callvault.cli.trunk:trunk",
    "extension": "callvault.cli.extension:extension",
    "ingest": "callvault.cli.ingest:ingest",
    "call": "callvault.cli.call:call",
    "tls": "callvault.cli.tls:tls",
    "keys": "callvault.cli.keys:keys",
    "audit": "callvault.cli.audit:audit",
    "recordings": "callvault.cli.recordings:recordings",
    "transcripts": "callvault.cli.recordings:transcripts",
    "login": "callvault.cli.auth:login",
    "logout": "callvault.cli.auth:logout",
    "whoami": "callvault.cli.auth:whoami",
    "user": "callvault.cli.identity:user",
    "token": "callvault.cli.identity:token",
    "role": "callvault.cli.identity:role",
    "dsar": "callvault.cli.dsar:dsar",
    "replay": "callvault.cli.replay:replay",
    "erase": "callvault.cli.erase:erase",
    "certificate": "callvault.cli.erase:certificate",
    "billing": "callvault.cli.billing:billing",
}

EXIT_REFUSED = 3


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command


class AppContext:
    """What every subcommand receives: settings loaded once, lazily, from the global options."""

    def __init__(self, config_file: str | None, overrides: dict[str, Any]) -> None:
        self._config_file = config_file
        self._overrides = overrides
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self._config_file, **self._overrides)
        return self._settings


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    envvar="CALLVAULT_CONFIG",
    help="TOML settings file (default: $CALLVAULT_CONFIG, then environment, then defaults).",
)
@click.version_option(package_name="callvault")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """Callvault: the call-data pipeline (SIP edge -> Kafka -> encrypted, in-region stores).

    Settings come from CALLVAULT_* environment variables (nested keys joined with '__',
    e.g. CALLVAULT_KAFKA__BOOTSTRAP) and an optional TOML file.
    """
    ctx.obj = AppContext(config_file, {})


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="callvault", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CallvaultError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_REFUSED)


def get_settings(ctx: click.Context) -> Settings:
    obj = ctx.find_object(AppContext)
    if obj is None:  # invoked outside the group (tests calling a command directly)
        obj = AppContext(None, {})
        ctx.obj = obj
    return obj.settings
