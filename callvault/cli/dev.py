"""``callvault dev``: the local dev stack (Kafka KRaft, SeaweedFS S3, rsyslog on 127.0.0.1).

The stack lives under ``$CALLVAULT_HOME`` (default ``~/.callvault``): one directory per service
with its pid file, log, generated config and data. ``down`` stops only what ``up`` started there.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import click

from callvault.cli.main import get_settings
from callvault.devstack.common import ServiceStatus

_JSON_HELP = "Print JSON: one object per service (state, pid, endpoint, data_dir, log_path, ...)."


@click.group()
def dev() -> None:
    """Run the local dev stack: Apache Kafka (KRaft), SeaweedFS S3 and rsyslog, on 127.0.0.1.

    rsyslog is the SIEM stand-in: syslog over TLS (RFC 5425) into <home>/rsyslog/messages.log.
    State lives under CALLVAULT_HOME (default ~/.callvault); ports come from the dev.* settings
    (CALLVAULT_DEV__KAFKA_PORT, CALLVAULT_DEV__S3_PORT, CALLVAULT_DEV__SYSLOG_PORT, ...). Kafka
    jars are fetched once with Maven into the cache dir. ClickHouse is reported but not started:
    the default is an embedded chDB directory owned by the stream worker.
    """


@dev.command()
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@click.pass_context
def up(ctx: click.Context, as_json: bool) -> None:
    """Start the services that are not running and wait until each answers.

    Idempotent: running services are only re-checked. Creates one S3 bucket per region. If a
    service fails to start, the error shows the end of its log and whatever this command started
    is stopped again.
    """
    from callvault.devstack import stack

    statuses = stack.up(get_settings(ctx), progress=_progress)
    _emit(statuses, as_json)


@dev.command()
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@click.pass_context
def down(ctx: click.Context, as_json: bool) -> None:
    """Stop the services `dev up` started (per the pid files under CALLVAULT_HOME).

    Data is kept; the next `dev up` resumes with it. Processes not started by this stack are
    never signalled.
    """
    from callvault.devstack import stack

    statuses = stack.down(get_settings(ctx), progress=_progress)
    _emit(statuses, as_json)


@dev.command()
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show each service: state, pid, endpoint, data directory and log file."""
    from callvault.devstack import stack

    _emit(stack.status(get_settings(ctx)), as_json)


def _progress(message: str) -> None:
    click.echo(message, err=True)


_STATE_STYLE = {"running": "green", "stopped": "red", "embedded": "cyan", "external": "cyan"}


def _emit(statuses: Sequence[ServiceStatus], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([s.to_json() for s in statuses], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    services = Table(box=None, pad_edge=False)
    services.add_column("service", no_wrap=True)
    services.add_column("state", no_wrap=True)
    services.add_column("pid", no_wrap=True, justify="right")
    services.add_column("endpoint", no_wrap=True)
    services.add_column("detail")
    files = Table(box=None, pad_edge=False, show_header=False)
    files.add_column(no_wrap=True)
    files.add_column(no_wrap=True, style="dim")
    files.add_column(overflow="fold")
    for s in statuses:
        style = _STATE_STYLE.get(s.state, "")
        services.add_row(
            s.name,
            f"[{style}]{s.state}[/]" if style else s.state,
            str(s.pid) if s.pid is not None else "-",
            s.endpoint,
            s.detail,
        )
        for label, path in (("data", s.data_dir), ("log", s.log_path)):
            if path is not None:
                files.add_row(
                    s.name if label == "data" or s.data_dir is None else "", label, str(path)
                )
    console = Console(highlight=False)
    console.print(services)
    console.print()
    console.print(files)
