"""The call analytics sink: ``SealedCallEvent`` -> ``calls`` (one row per call), ``call_events``
and ``tool_invocations`` (from each snapshot; the latest snapshot's rows win).

Each CallEvent is a snapshot of everything known about the call when it was emitted, so the row
of the latest event (by kind, then time) is the call's current state. Tool arguments are not
stored here: they are free text from the call (PCI-redacted, but possibly personal); analytics
gets the tool, its outcome and latency.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from sinks.clickhouse.rows import Rows, RowSink

_KIND_RANK = {"STARTED": 1, "ANSWERED": 2, "ENDED": 3}
_RANK_WEIGHT = 10**17  # microsecond timestamps stay below 10^17 until the year 5138

CALL_COLUMNS = (
    "workspace_id", "call_id", "region", "state", "call_started_at", "answered_at", "ended_at",
    "duration_ms", "caller_number_hash", "caller_number_masked", "callee_number_hash",
    "callee_number_masked", "direction", "trunk_id", "agent_id", "codec", "end_reason",
    "recording_enabled", "suppressed", "suppression_reason", "tool_invocation_count",
    "packets_received", "packets_lost", "jitter_ms", "redaction_count", "policy_version",
    "expires_at", "last_event_id", "version",
)  # fmt: skip
EVENT_COLUMNS = (
    "workspace_id", "call_id", "event_id", "region", "kind", "occurred_at", "sealed_at",
    "expires_at",
)  # fmt: skip


def row_version(kind: str, occurred_at: datetime) -> int:
    """Later states win over earlier ones even if clocks disagree; time breaks ties."""
    micros = int(occurred_at.timestamp() * 1_000_000)
    return _KIND_RANK[kind] * _RANK_WEIGHT + micros


TOOL_COLUMNS = (
    "workspace_id", "call_id", "idx", "region", "name", "invoked_at", "duration_ms", "status",
    "expires_at", "version",
)  # fmt: skip


class CallsSink(RowSink):
    TABLES: ClassVar[dict[str, tuple[str, ...]]] = {
        "calls": CALL_COLUMNS,
        "call_events": EVENT_COLUMNS,
        "tool_invocations": TOOL_COLUMNS,
    }

    def record_id(self, rec: Mapping[str, Any]) -> str:
        return str(rec["event_id"])

    def rows(self, rec: Mapping[str, Any]) -> Rows:
        version = row_version(rec["kind"], rec["occurred_at"])
        call = [
            rec["workspace_id"], rec["call_id"], rec["region"], rec["kind"],
            rec["call_started_at"], rec["answered_at"], rec["ended_at"], rec["duration_ms"],
            rec["caller_number_hash"], rec["caller_number_masked"],
            rec["callee_number_hash"], rec["callee_number_masked"], rec["direction"],
            rec["trunk_id"], rec["agent_id"], rec["codec"], rec["end_reason"],
            rec["recording_enabled"], rec["suppressed"], rec["suppression_reason"],
            len(rec["tool_invocations"]), rec["packets_received"], rec["packets_lost"],
            rec["jitter_ms"], rec["redaction_count"], rec["policy_version"],
            rec["expires_at"], rec["event_id"], version,
        ]  # fmt: skip
        event = [
            rec["workspace_id"], rec["call_id"], rec["event_id"], rec["region"], rec["kind"],
            rec["occurred_at"], rec["sealed_at"], rec["expires_at"],
        ]  # fmt: skip
        tools = [
            [
                rec["workspace_id"],
                rec["call_id"],
                i,
                rec["region"],
                inv["name"],
                inv["invoked_at"],
                inv["duration_ms"],
                inv["status"],
                rec["expires_at"],
                version,
            ]
            for i, inv in enumerate(rec["tool_invocations"])
        ]
        return {"calls": [call], "call_events": [event], "tool_invocations": tools}
