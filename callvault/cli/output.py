"""Output helpers shared by the commands: ``--json`` for scripts, rich tables for people."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, sort_keys=True))


def emit_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(str(col))
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console().print(table)


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")


def iso_time(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    """Click callback for ``--from``/``--to`` style options: ISO-8601, naive taken as UTC."""
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO-8601 date or time") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
