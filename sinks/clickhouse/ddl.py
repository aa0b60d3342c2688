"""Analytics tables. Idempotent DDL run by the sink at start (``CREATE ... IF NOT EXISTS``).

Why these engines:
- ``ReplacingMergeTree(version)``: Kafka delivery is at-least-once, so the same event may be
  inserted twice after a crash; rows with the same sorting key collapse to the highest version
  (``FINAL`` at read time, merges eventually). Inserts also carry a deduplication token, which
  ``non_replicated_deduplication_window`` honours, so an identical retried batch is dropped at once.
- ``TTL toDateTime(expires_at) DELETE``: retention is enforced by the database itself; an expired
  row is removed by merges and is never even written if it arrives already expired.
"""

from __future__ import annotations

from sinks.clickhouse.client import ClickHouse

_TABLES = {
    "calls": """
CREATE TABLE IF NOT EXISTS {db}.calls (
    workspace_id LowCardinality(String),
    call_id String,
    region LowCardinality(String),
    state Enum8('STARTED' = 1, 'ANSWERED' = 2, 'ENDED' = 3),
    call_started_at DateTime64(3, 'UTC'),
    answered_at Nullable(DateTime64(3, 'UTC')),
    ended_at Nullable(DateTime64(3, 'UTC')),
    duration_ms Nullable(UInt64),
    caller_number_hash String,
    caller_number_masked String,
    callee_number_hash String,
    callee_number_masked String,
    direction LowCardinality(String),
    trunk_id Nullable(String),
    agent_id Nullable(String),
    codec LowCardinality(Nullable(String)),
    end_reason LowCardinality(Nullable(String)),
    recording_enabled Bool,
    suppressed Bool,
    suppression_reason Nullable(String),
    tool_invocation_count UInt32,
    packets_received Nullable(UInt64),
    packets_lost Nullable(UInt64),
    jitter_ms Nullable(Float64),
    redaction_count UInt32,
    policy_version UInt64,
    expires_at DateTime64(3, 'UTC'),
    last_event_id String,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (workspace_id, call_id)
TTL toDateTime(expires_at) DELETE
SETTINGS non_replicated_deduplication_window = 1000
""",
    "call_events": """
CREATE TABLE IF NOT EXISTS {db}.call_events (
    workspace_id LowCardinality(String),
    call_id String,
    event_id String,
    region LowCardinality(String),
    kind Enum8('STARTED' = 1, 'ANSWERED' = 2, 'ENDED' = 3),
    occurred_at DateTime64(3, 'UTC'),
    sealed_at DateTime64(3, 'UTC'),
    expires_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (workspace_id, call_id, event_id)
TTL toDateTime(expires_at) DELETE
SETTINGS non_replicated_deduplication_window = 1000
""",
    "tool_invocations": """
CREATE TABLE IF NOT EXISTS {db}.tool_invocations (
    workspace_id LowCardinality(String),
    call_id String,
    idx UInt32,
    region LowCardinality(String),
    name String,
    invoked_at DateTime64(3, 'UTC'),
    duration_ms Nullable(UInt64),
    status LowCardinality(String),
    expires_at DateTime64(3, 'UTC'),
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (workspace_id, call_id, idx)
TTL toDateTime(expires_at) DELETE
SETTINGS non_replicated_deduplication_window = 1000
""",
    # Ciphertext only: the text is sealed under the call key (AAD: workspace, call, kind,
    # region), so this table is useless without the key ring and dies with the call key.
    # Stored base64: binary String values do not survive every client path (chDB hex-encodes).
    "transcripts": """
CREATE TABLE IF NOT EXISTS {db}.transcripts (
    workspace_id LowCardinality(String),
    call_id String,
    segment_id String,
    region LowCardinality(String),
    kind LowCardinality(String),
    speaker LowCardinality(String),
    started_at DateTime64(3, 'UTC'),
    ended_at Nullable(DateTime64(3, 'UTC')),
    language LowCardinality(Nullable(String)),
    confidence Nullable(Float32),
    redaction_count UInt32,
    ciphertext_b64 String,
    expires_at DateTime64(3, 'UTC'),
    sealed_at DateTime64(6, 'UTC'),
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (workspace_id, call_id, segment_id)
TTL toDateTime(expires_at) DELETE
SETTINGS non_replicated_deduplication_window = 1000
""",
    # Kept at least a year whatever the workspace retention (the promise: 1 year minimum).
    "audit_log": """
CREATE TABLE IF NOT EXISTS {db}.audit_log (
    event_id String,
    occurred_at DateTime64(6, 'UTC'),
    workspace_id Nullable(String),
    region LowCardinality(Nullable(String)),
    actor_kind LowCardinality(String),
    actor_id String,
    action LowCardinality(String),
    target Nullable(String),
    outcome LowCardinality(String),
    details Map(String, String)
) ENGINE = ReplacingMergeTree
ORDER BY (event_id)
TTL toDateTime(occurred_at) + INTERVAL 400 DAY DELETE
SETTINGS non_replicated_deduplication_window = 1000
""",
}


async def ensure_schema(ch: ClickHouse) -> None:
    await ch.command(f"CREATE DATABASE IF NOT EXISTS {ch.database}")
    for ddl in _TABLES.values():
        await ch.command(ddl.format(db=ch.database))


TABLES = tuple(_TABLES)
