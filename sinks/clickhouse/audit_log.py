"""``audit.events`` -> ``audit_log``, kept 400 days whatever the workspace retention (the promise
is "at least one year"). Keyed by event id, so a replayed event is one row.

Region: an event of a workspace in another region is refused like any record; an event without
a region (control-plane actions that belong to no workspace) is kept by every region's store, so
each region's auditors see them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from sinks.clickhouse.rows import Rows, RowSink

AUDIT_COLUMNS = (
    "event_id", "occurred_at", "workspace_id", "region", "actor_kind", "actor_id", "action",
    "target", "outcome", "details",
)  # fmt: skip


class AuditLogSink(RowSink):
    TABLES: ClassVar[dict[str, tuple[str, ...]]] = {"audit_log": AUDIT_COLUMNS}

    def check(self, rec: Mapping[str, Any]) -> None:
        if rec["region"] is not None:
            super().check(rec)

    def record_id(self, rec: Mapping[str, Any]) -> str:
        return str(rec["event_id"])

    def rows(self, rec: Mapping[str, Any]) -> Rows:
        actor = rec["actor"]
        return {
            "audit_log": [
                [
                    rec["event_id"],
                    rec["occurred_at"],
                    rec["workspace_id"],
                    rec["region"],
                    actor["kind"],
                    actor["id"],
                    rec["action"],
                    rec["target"],
                    rec["outcome"],
                    dict(rec["details"]),
                ]
            ]
        }
