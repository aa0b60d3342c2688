"""The call analytics sink: ``SealedCallEvent`` -> ``calls`` (one row per call) + ``call_events``.

Delivery guarantee: **at-least-once writes, exactly-once rows after FINAL.** A replayed event
produces a row with the same key and version, which ReplacingMergeTree collapses; an identical
retried batch is dropped by its deduplication token.

Each CallEvent is a snapshot of everything known about the call when it was emitted, so the row
of the latest event (by kind, then time) is the call's current state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sinks.clickhouse.client import ClickHouse
from sinks.errors import ResidencyViolation

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


class CallsSink:
    """Region-bound: it refuses (raises :class:`ResidencyViolation`) a record of another region."""

    def __init__(self, ch: ClickHouse, region: str) -> None:
        self._ch = ch
        self.region = region
        self._calls: list[list[Any]] = []
        self._events: list[list[Any]] = []
        self._ids: list[str] = []

    def check(self, rec: Mapping[str, Any]) -> None:
        if rec["region"] != self.region:
            raise ResidencyViolation(
                f"record of region {rec['region']!r} refused by the {self.region!r} sink"
            )

    def add(self, rec: Mapping[str, Any]) -> None:
        self.check(rec)
        self._ids.append(rec["event_id"])
        self._calls.append(
            [
                rec["workspace_id"], rec["call_id"], rec["region"], rec["kind"],
                rec["call_started_at"], rec["answered_at"], rec["ended_at"], rec["duration_ms"],
                rec["caller_number_hash"], rec["caller_number_masked"],
                rec["callee_number_hash"], rec["callee_number_masked"], rec["direction"],
                rec["trunk_id"], rec["agent_id"], rec["codec"], rec["end_reason"],
                rec["recording_enabled"], rec["suppressed"], rec["suppression_reason"],
                len(rec["tool_invocations"]), rec["packets_received"], rec["packets_lost"],
                rec["jitter_ms"], rec["redaction_count"], rec["policy_version"],
                rec["expires_at"], rec["event_id"], row_version(rec["kind"], rec["occurred_at"]),
            ]
        )  # fmt: skip
        self._events.append(
            [
                rec["workspace_id"], rec["call_id"], rec["event_id"], rec["region"], rec["kind"],
                rec["occurred_at"], rec["sealed_at"], rec["expires_at"],
            ]
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self._ids)

    async def flush(self) -> None:
        """Write the buffer; on error the buffer is kept so the caller can retry the same batch."""
        if not self._ids:
            return
        token = hashlib.sha256("\n".join(self._ids).encode()).hexdigest()
        await self._ch.insert(
            "calls", self._calls, CALL_COLUMNS, settings={"insert_deduplication_token": token}
        )
        await self._ch.insert(
            "call_events",
            self._events,
            EVENT_COLUMNS,
            settings={"insert_deduplication_token": token},
        )
        self.clear()

    def clear(self) -> None:
        self._calls.clear()
        self._events.clear()
        self._ids.clear()
