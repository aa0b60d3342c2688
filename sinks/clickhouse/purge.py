"""Deleting a workspace's call rows from every per-call table (retention, erasure).

One function so retention and erasure delete the same tables the same way: counted, deleted with
a synchronous mutation, counted again. A row that survives is an error, never a silent success:
a deletion certificate must not claim rows that are still there. ``audit_log`` is not a call
table: the audit trail is kept for its own retention (it holds ids and counts, no content).
"""

from __future__ import annotations

from collections.abc import Sequence

from sinks.clickhouse.client import ClickHouse
from sinks.errors import SinkUnavailable

CALL_TABLES = ("calls", "call_events", "tool_invocations", "transcripts")


def predicate(call_ids: Sequence[str] | None) -> str:
    where = "workspace_id = {ws:String}"
    return where if call_ids is None else where + " AND call_id IN {ids:Array(String)}"


async def delete_call_rows(
    ch: ClickHouse, db: str, workspace_id: str, call_ids: Sequence[str] | None = None
) -> dict[str, int]:
    """Delete the workspace's rows (all of them, or those of ``call_ids``) from every call
    table; returns rows deleted per table (tables with none are left out)."""
    if call_ids is not None and not call_ids:
        return {}
    where = predicate(call_ids)
    params: dict[str, object] = {"ws": workspace_id}
    if call_ids is not None:
        params["ids"] = list(call_ids)
    deleted: dict[str, int] = {}
    for table in CALL_TABLES:
        # db and table are identifiers from settings and constants; values are bound
        count_sql = f"SELECT count() FROM {db}.{table} WHERE {where}"  # noqa: S608
        _, counted = await ch.query(count_sql, parameters=params)
        n = int(counted[0][0])
        if not n:
            continue
        await ch.command(
            f"ALTER TABLE {db}.{table} DELETE WHERE {where}",
            parameters=params,
            settings={"mutations_sync": 1},
        )
        _, left = await ch.query(count_sql, parameters=params)
        if int(left[0][0]):
            raise SinkUnavailable(f"{db}.{table}: {left[0][0]} rows still present after delete")
        deleted[table] = n
    return deleted
