"""The ClickHouse call sink on a real (embedded) ClickHouse engine."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from callvault.control.workspaces import WorkspacePolicy
from callvault.simulate import simulated_calls
from sinks.clickhouse.calls import CallsSink
from sinks.clickhouse.ddl import ensure_schema
from sinks.errors import ResidencyViolation
from streams.governance import CallKey
from streams.metadata import seal_call_event

POLICY = WorkspacePolicy("acme", "Acme", "eu", retention_days=30)


def sealed_events(n_calls: int, *, policy: WorkspacePolicy = POLICY, seed: int = 1, **kw):
    out = []
    for call in simulated_calls(policy.workspace_id, n_calls, seed=seed):
        for ev in call.events:
            out.append(
                seal_call_event(
                    {**ev, **kw}, policy, pepper=b"pepper", key=CallKey("ck-test", bytes(32))
                )
            )
    return out


async def test_schema_is_idempotent_and_declares_ttl(clickhouse):
    await ensure_schema(clickhouse)
    await ensure_schema(clickhouse)
    _, rows = await clickhouse.query(
        "SELECT name, create_table_query FROM system.tables "
        f"WHERE database = '{clickhouse.database}'"
    )
    ddl = dict(rows)
    assert set(ddl) == {"calls", "call_events", "tool_invocations", "transcripts", "audit_log"}
    for table, create in ddl.items():
        assert "ReplacingMergeTree" in create
        if table == "audit_log":  # a year at least, whatever the workspace retention
            assert "TTL toDateTime(occurred_at) + toIntervalDay(400)" in create
        else:
            assert "TTL toDateTime(expires_at)" in create


async def test_replayed_events_collapse_to_one_row_per_event(clickhouse):
    await ensure_schema(clickhouse)
    sink = CallsSink(clickhouse, "eu")
    events = sealed_events(4)
    for rec in events:
        sink.add(rec)
    await sink.flush()
    # a replay after a crash: the same events again, in a different batch shape
    for rec in reversed(events[2:]):
        sink.add(rec)
    await sink.flush()
    db = clickhouse.database
    _, rows = await clickhouse.query(
        f"SELECT count(), uniqExact(event_id) FROM {db}.call_events FINAL"
    )
    assert rows == [(len(events), len(events))]
    _, rows = await clickhouse.query(
        f"SELECT count(), countIf(state = 'ENDED') FROM {db}.calls FINAL"
    )
    assert rows == [(4, 4)]


async def test_identical_retried_batch_is_dropped_by_its_dedup_token(clickhouse):
    await ensure_schema(clickhouse)
    sink = CallsSink(clickhouse, "eu")
    events = sealed_events(2)
    for _ in range(2):
        for rec in events:
            sink.add(rec)
        await sink.flush()
    # without FINAL: the second insert never created parts
    _, rows = await clickhouse.query(f"SELECT count() FROM {clickhouse.database}.call_events")
    assert rows == [(len(events),)]


async def test_sink_refuses_a_record_of_another_region(clickhouse):
    sink = CallsSink(clickhouse, "na")
    with pytest.raises(ResidencyViolation, match="region 'eu' refused by the 'na' sink"):
        sink.add(sealed_events(1)[0])
    assert len(sink) == 0


async def test_ttl_deletes_an_expired_row(clickhouse):
    """TTL is enforced by the engine: a row whose expires_at passes is removed by the next merge.

    Rows are stamped to expire two seconds from now; the test then asks the engine to merge
    (what background merges and the retention sweeper do) until the row is gone.
    """
    await ensure_schema(clickhouse)
    sink = CallsSink(clickhouse, "eu")
    expiring = sealed_events(1, seed=5)
    soon = datetime.now(UTC) + timedelta(seconds=2)
    for rec in expiring:
        sink.add({**rec, "expires_at": soon})
    keeper = sealed_events(1, seed=6)
    for rec in keeper:
        sink.add(rec)
    await sink.flush()
    db = clickhouse.database
    _, rows = await clickhouse.query(f"SELECT count() FROM {db}.calls FINAL")
    assert rows == [(2,)]

    deadline = time.monotonic() + 60
    while True:
        await clickhouse.command(f"OPTIMIZE TABLE {db}.calls FINAL")
        _, rows = await clickhouse.query(f"SELECT call_id FROM {db}.calls")
        if [r[0] for r in rows] == [keeper[0]["call_id"]]:
            break
        assert time.monotonic() < deadline, f"expired row still present: {rows}"
    _, rows = await clickhouse.query(
        f"SELECT count() FROM {db}.calls WHERE call_id = '{expiring[0]['call_id']}'"
    )
    assert rows == [(0,)]


async def test_an_already_expired_row_is_never_stored(clickhouse):
    await ensure_schema(clickhouse)
    sink = CallsSink(clickhouse, "eu")
    for rec in sealed_events(1, seed=9):
        sink.add({**rec, "expires_at": datetime.now(UTC) - timedelta(seconds=1)})
    await sink.flush()
    _, rows = await clickhouse.query(f"SELECT count() FROM {clickhouse.database}.calls")
    assert rows == [(0,)]
