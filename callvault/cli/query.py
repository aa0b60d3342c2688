"""``callvault query``: read-only SQL against the analytics store."""

from __future__ import annotations

import csv
import sys

import click

from callvault.analytics_client import query as run_query
from callvault.cli.main import get_settings
from callvault.cli.output import emit_json, emit_table


@click.command()
@click.argument("sql")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.pass_context
def query(ctx: click.Context, sql: str, fmt: str, as_json: bool) -> None:
    """Run read-only SQL through the worker that owns the analytics store.

    Example: callvault query "SELECT workspace_id, count() FROM callvault.calls FINAL GROUP BY 1"
    """
    result = run_query(get_settings(ctx), sql)
    if as_json or fmt == "json":
        emit_json([dict(zip(result.columns, row, strict=True)) for row in result.rows])
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows(result.rows)
    else:
        emit_table(None, result.columns, result.rows)
