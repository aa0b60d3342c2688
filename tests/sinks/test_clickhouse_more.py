"""Transcripts (ciphertext only), tool invocations and the audit log on the embedded engine."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from callvault.audit import audit_event
from callvault.control.workspaces import WorkspacePolicy
from callvault.crypto import Aad, unseal
from sinks.clickhouse.audit_log import AuditLogSink
from sinks.clickhouse.calls import CallsSink
from sinks.clickhouse.ddl import ensure_schema
from sinks.clickhouse.transcripts import TranscriptsSink
from sinks.errors import ResidencyViolation
from streams.governance import CallKey, seal_transcript_segment
from tests.sinks.test_clickhouse_calls import sealed_events

KEY = CallKey("ck-test", bytes(range(32)))
POLICY = WorkspacePolicy("acme", "Acme", "eu", retention_days=30)
T0 = datetime.now(UTC) - timedelta(minutes=5)


def _segment(text: str, sealed_offset_s: int = 0) -> dict:
    seg = {
        "call_id": "c1", "workspace_id": "acme", "segment_id": "s1", "kind": "SEGMENT",
        "speaker": "CALLER", "text": text, "started_at": T0, "ended_at": None, "language": "en",
        "confidence": 0.5, "call_started_at": T0, "agent_id": "a", "suppressed": False,
    }  # fmt: skip
    now = T0 + timedelta(minutes=1, seconds=sealed_offset_s)
    return seal_transcript_segment(seg, POLICY, KEY, now=now)


async def test_transcripts_hold_only_ciphertext_and_a_correction_wins(clickhouse):
    await ensure_schema(clickhouse)
    sink = TranscriptsSink(clickhouse, "eu")
    first, corrected = _segment("card 4111 1111 1111 1111 ok"), _segment("I said Thursday", 5)
    for rec in (first, corrected, first):  # a replay of the first must not win
        sink.add(rec)
    await sink.flush()
    db = clickhouse.database
    _, rows = await clickhouse.query(
        f"SELECT ciphertext_b64, redaction_count FROM {db}.transcripts FINAL WHERE call_id = 'c1'"
    )
    [(blob, redactions)] = rows
    raw = base64.b64decode(blob)
    assert b"Thursday" not in raw
    assert unseal(KEY.key, raw, Aad("acme", "c1", "transcript", "eu")) == b"I said Thursday"
    assert redactions == 0


async def test_tool_invocations_of_the_latest_snapshot_are_rows_without_arguments(clickhouse):
    await ensure_schema(clickhouse)
    tool = {
        "name": "book", "invoked_at": T0, "duration_ms": 40, "status": "OK",
        "arguments_redacted": '{"name": "Jane Doe"}',
    }  # fmt: skip
    events = sealed_events(1, tool_invocations=[tool, {**tool, "status": "ERROR"}])
    sink = CallsSink(clickhouse, "eu")
    for rec in events:
        sink.add(rec)
    await sink.flush()
    _, rows = await clickhouse.query(
        f"SELECT idx, name, status FROM {clickhouse.database}.tool_invocations FINAL ORDER BY idx"
    )
    assert rows == [(0, "book", "OK"), (1, "book", "ERROR")]
    _, cols = await clickhouse.query(
        f"SELECT name FROM system.columns WHERE database = '{clickhouse.database}' "
        "AND table = 'tool_invocations'"
    )
    assert not any("argument" in c for (c,) in cols)


async def test_audit_log_keeps_this_region_and_region_less_events_once(clickhouse):
    await ensure_schema(clickhouse)
    sink = AuditLogSink(clickhouse, "eu")
    here = audit_event("trunk.create", actor_kind="USER", actor_id="u1", workspace_id="acme",
                       region="eu", details={"trunk": "pbx1"})  # fmt: skip
    global_ = audit_event("topics.ensure", actor_kind="SYSTEM", actor_id="cli")
    for rec in (here, global_, here):
        sink.add(rec)
    await sink.flush()
    with pytest.raises(ResidencyViolation):
        sink.add(audit_event("trunk.create", actor_kind="USER", actor_id="u", region="na"))
    _, rows = await clickhouse.query(
        f"SELECT action, details['trunk'] FROM {clickhouse.database}.audit_log FINAL "
        "ORDER BY action"
    )
    assert rows == [("topics.ensure", ""), ("trunk.create", "pbx1")]
