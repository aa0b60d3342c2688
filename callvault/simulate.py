"""Synthetic call metadata, for the demo, the tests and the benchmark.

Each call yields the three snapshots an ingest node publishes (STARTED, ANSWERED, ENDED); every
snapshot carries everything known about the call at that moment, as the contract requires.
Until the SIP ingest node lands this is also the only producer of ``ingest.metadata``.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer

from callvault.kafka_client import kafka_options
from callvault.settings import Settings
from callvault.topics import Topics
from schemas.codec import get_codec


@dataclass(frozen=True)
class SimulatedCall:
    call_id: str
    events: list[dict[str, Any]]


def call_events(
    workspace_id: str,
    *,
    rng: random.Random,
    started_at: datetime | None = None,
    agent_id: str = "agent-1",
) -> SimulatedCall:
    call_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    start = started_at or datetime.now(UTC) - timedelta(seconds=rng.randint(60, 600))
    answered = start + timedelta(milliseconds=rng.randint(500, 4000))
    duration = timedelta(seconds=rng.randint(20, 400))
    ended = answered + duration
    base: dict[str, Any] = {
        "call_id": call_id,
        "workspace_id": workspace_id,
        "call_started_at": start,
        "answered_at": None,
        "ended_at": None,
        "duration_ms": None,
        "caller_number": f"+44 7{rng.randint(100, 999)} {rng.randint(100000, 999999)}",
        "callee_number": "+44 20 7946 0000",
        "direction": "INBOUND",
        "trunk_id": "trunk-1",
        "agent_id": agent_id,
        "codec": "PCMU",
        "end_reason": None,
        "recording_enabled": True,
        "suppressed": False,
        "suppression_reason": None,
        "tool_invocations": [],
        "packets_received": None,
        "packets_lost": None,
        "jitter_ms": None,
        "sip_call_id": f"{call_id}@pbx.example",
        "ingest_node": "simulator",
    }
    started = {**base, "kind": "STARTED", "occurred_at": start}
    answered_ev = {**base, "kind": "ANSWERED", "occurred_at": answered, "answered_at": answered}
    packets = int(duration.total_seconds() * 50)
    ended_ev = {
        **answered_ev,
        "kind": "ENDED",
        "occurred_at": ended,
        "ended_at": ended,
        "duration_ms": int((ended - answered).total_seconds() * 1000),
        "end_reason": rng.choice(["NORMAL_CLEARING", "CALLER_HANGUP", "AGENT_HANGUP"]),
        "tool_invocations": [
            {
                "name": "lookup_order",
                "invoked_at": answered + timedelta(seconds=5),
                "duration_ms": 120,
                "status": "OK",
                "arguments_redacted": None,
            }
        ],
        "packets_received": packets,
        "packets_lost": rng.randint(0, 3),
        "jitter_ms": round(rng.uniform(0.5, 12.0), 2),
    }
    events = []
    for ev in (started, answered_ev, ended_ev):
        ev["event_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        events.append(ev)
    return SimulatedCall(call_id, events)


def simulated_calls(
    workspace_id: str, count: int, *, seed: int = 1, agent_id: str = "agent-1"
) -> Iterator[SimulatedCall]:
    rng = random.Random(seed)
    for _ in range(count):
        yield call_events(workspace_id, rng=rng, agent_id=agent_id)


async def publish_events(
    settings: Settings, events: list[dict[str, Any]], *, raw: list[bytes] | None = None
) -> None:
    """Produce CallEvents to ``ingest.metadata`` keyed by call id (acks=all, idempotent).

    ``raw`` values are sent as-is after the events: the tests use it for poison messages.
    """
    await publish_records(settings, "ingest.metadata", "CallEvent", events, raw=raw)


async def publish_records(
    settings: Settings,
    logical_topic: str,
    schema: str,
    records: list[dict[str, Any]],
    *,
    raw: list[bytes] | None = None,
) -> None:
    """Produce Avro ``schema`` records to a topic, keyed by ``call_id`` (acks=all, idempotent),
    then any ``raw`` values as they are, keyed ``poison``."""
    codec = get_codec()
    topic = Topics(settings).name(logical_topic)
    producer = AIOKafkaProducer(
        **kafka_options(settings),
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=r["call_id"].encode(), value=codec.encode(schema, r))
            for r in records
        ]
        futures += [await producer.send(topic, key=b"poison", value=v) for v in raw or []]
        for fut in futures:
            await fut
    finally:
        await producer.stop()
