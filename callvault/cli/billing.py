"""``callvault billing usage``: what a workspace used in a period, for whoever views its bill.

Counted from the analytics store's ``calls`` table through the worker, in a session confined to
the workspace (the same path as ``callvault query --workspace``), so a ``billing.view`` holder
sees call counts and minutes, never numbers or content. Each view is an audit event.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from callvault.analytics_client import query
from callvault.audit import audit_event, record_once
from callvault.cli.asyncrun import run
from callvault.cli.auth import actor_id, authorize
from callvault.cli.main import get_settings
from callvault.cli.output import emit_json, emit_table, iso_time, json_option
from callvault.control.rbac import Permission
from callvault.errors import ControlError
from callvault.settings import Settings


def _month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@click.group()
def billing() -> None:
    """Usage for billing (calls, minutes, recorded minutes) per workspace."""


@billing.command("usage")
@click.option("--workspace", "workspace_id", required=True)
@click.option("--from", "since", callback=iso_time, help="Start (ISO); default: this month's 1st.")
@click.option("--to", "until", callback=iso_time, help="End, exclusive (ISO); default: now.")
@json_option
@click.pass_context
def usage(
    ctx: click.Context, workspace_id: str, since: datetime | None, until: datetime | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Calls, billable minutes and recorded minutes of WORKSPACE in a period, by day. Needs
    billing.view."""
    now = datetime.now(UTC)
    start, end = since or _month_start(now), until or now
    if end <= start:
        raise ControlError(f"--to ({end.isoformat()}) must be after --from ({start.isoformat()})")
    rows = run(_usage(get_settings(ctx), workspace_id, start, end))
    if as_json:
        emit_json({"workspace_id": workspace_id, "from": start.isoformat(),
                   "to": end.isoformat(), "days": rows,
                   "total": {k: sum(r[k] for r in rows) for k in _TOTALS}})  # fmt: skip
        return
    emit_table(
        f"usage of {workspace_id}, {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC",
        ["day", *_TOTALS], [[r["day"], *(r[k] for k in _TOTALS)] for r in rows],
    )  # fmt: skip


_TOTALS = ("calls", "minutes", "recorded_minutes")


async def _usage(
    settings: Settings, workspace_id: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    principal = await authorize(
        settings, workspace_id, Permission.BILLING_VIEW, action="billing.view"
    )
    await record_once(settings, audit_event(
        "billing.view", actor_kind="USER", actor_id=actor_id(principal),
        workspace_id=workspace_id, target=f"workspace:{workspace_id}",
        details={"from": start.isoformat(), "to": end.isoformat()},
    ))  # fmt: skip
    # parsed datetimes, never user text, go into the SQL; db is an identifier from settings
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    lo, hi = (f"toDateTime64('{t.astimezone(UTC).strftime(fmt)}', 3, 'UTC')" for t in (start, end))
    db = settings.clickhouse.database
    sql = (
        "SELECT toString(toDate(call_started_at)) AS day, count() AS calls, "  # noqa: S608
        "round(sum(ifNull(duration_ms, 0)) / 60000, 2) AS minutes, "
        "round(sumIf(ifNull(duration_ms, 0), recording_enabled AND NOT suppressed) / 60000, 2) "
        f"AS recorded_minutes FROM {db}.calls FINAL "
        f"WHERE call_started_at >= {lo} AND call_started_at < {hi} GROUP BY day ORDER BY day"
    )
    result = query(settings, sql, workspace=workspace_id)
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]
