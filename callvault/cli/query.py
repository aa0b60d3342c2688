"""``callvault query``: read-only SQL against the analytics store.

A token holder queries one workspace (``--workspace``, ``calls.query`` there), in a session the
engine itself confines to that workspace's rows (:mod:`sinks.clickhouse.isolation`): a query
naming another workspace, or none, sees nothing of the others. The local operator may query
the whole store, or one workspace the same way. Every query is an audit event (``calls.query``)
recorded before it runs.
"""

from __future__ import annotations

import csv
import hashlib
import sys

import click

from callvault.analytics_client import QueryResult
from callvault.analytics_client import query as run_query
from callvault.audit import audit_event, record_once
from callvault.cli.asyncrun import run
from callvault.cli.auth import actor_id, authorize, presented_token
from callvault.cli.main import get_settings
from callvault.cli.output import emit_json, emit_table
from callvault.control.rbac import Permission
from callvault.errors import ControlError
from callvault.settings import Settings


@click.command()
@click.argument("sql")
@click.option(
    "--workspace", "workspace_id", default=None,
    help="Confine the query to this workspace (required with a token).",
)  # fmt: skip
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.pass_context
def query(ctx: click.Context, sql: str, workspace_id: str | None, fmt: str, as_json: bool) -> None:
    """Run read-only SQL through the worker that owns the analytics store.

    Example: callvault query --workspace acme "SELECT count() FROM callvault.calls FINAL"
    """
    result = run(_query(get_settings(ctx), sql, workspace_id))
    if as_json or fmt == "json":
        emit_json([dict(zip(result.columns, row, strict=True)) for row in result.rows])
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows(result.rows)
    else:
        emit_table(None, result.columns, result.rows)


async def _query(settings: Settings, sql: str, workspace_id: str | None) -> QueryResult:
    if workspace_id is None and presented_token(settings) is not None:
        raise ControlError("--workspace is required when acting with a token")
    principal = None
    if workspace_id is not None:
        principal = await authorize(
            settings, workspace_id, Permission.CALLS_QUERY, action="calls.query"
        )
    await record_once(settings, audit_event(
        "calls.query", actor_kind="USER", actor_id=actor_id(principal), workspace_id=workspace_id,
        target=f"workspace:{workspace_id}" if workspace_id else "analytics:all",
        details={"sql": sql[:1000], "sql_sha256": hashlib.sha256(sql.encode()).hexdigest()},
    ))  # fmt: skip
    return run_query(settings, sql, workspace=workspace_id)
