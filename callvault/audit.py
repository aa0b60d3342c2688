"""Audit events: who did what, when, to what, with which outcome.

Every significant action becomes an ``AuditEvent`` on ``audit.events``. This module builds the
records and publishes them; hash-chaining and signing (so tampering is detectable) are added
where the log is persisted. Details are strings only and must never contain secrets: callers
pass identifiers, not credentials.
"""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from aiokafka import AIOKafkaProducer

from callvault.settings import Settings
from callvault.topics import Topics
from schemas.codec import get_codec

ActorKind = Literal["USER", "SERVICE", "SYSTEM"]
Outcome = Literal["SUCCESS", "DENIED", "FAILURE"]


def audit_event(
    action: str,
    *,
    actor_kind: ActorKind,
    actor_id: str,
    outcome: Outcome = "SUCCESS",
    workspace_id: str | None = None,
    region: str | None = None,
    target: str | None = None,
    details: Mapping[str, Any] | None = None,
    actor_workspace: str | None = None,
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "occurred_at": datetime.now(UTC),
        "actor": {"kind": actor_kind, "id": actor_id, "workspace_id": actor_workspace},
        "action": action,
        "workspace_id": workspace_id,
        "region": region,
        "target": target,
        "outcome": outcome,
        "details": {k: str(v) for k, v in (details or {}).items()},
        "prev_hash": None,
        "hash": None,
        "signature": None,
    }


def encode_audit(event: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """(key, value) for ``audit.events``: keyed by workspace so one workspace's trail is ordered."""
    key = (event.get("workspace_id") or "-").encode()
    return key, get_codec().encode("AuditEvent", event)


def cli_actor() -> str:
    """Until API tokens exist, the CLI acts as the local operating-system user."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


class AuditLog:
    """Publish audit events and wait until the broker acknowledged them (acks=all): an action
    whose audit record cannot be written is reported as failed by the caller."""

    def __init__(self, settings: Settings, producer: AIOKafkaProducer) -> None:
        self._topic = Topics(settings).audit_events
        self._producer = producer

    async def record(self, event: Mapping[str, Any]) -> None:
        key, value = encode_audit(event)
        await self._producer.send_and_wait(self._topic, key=key, value=value)


async def record_once(settings: Settings, event: Mapping[str, Any]) -> None:
    """Publish one audit event from a process without a producer of its own (a CLI command);
    raises :class:`~callvault.errors.KafkaUnavailable` if it could not be recorded, so the
    action it accounts for is not carried out."""
    from aiokafka.errors import KafkaError

    from callvault.errors import KafkaUnavailable
    from callvault.kafka_client import kafka_options

    producer = AIOKafkaProducer(**kafka_options(settings), acks="all", enable_idempotence=True)
    try:
        await producer.start()
        await AuditLog(settings, producer).record(event)
    except KafkaError as exc:
        raise KafkaUnavailable(f"cannot record audit event {event['action']}: {exc}") from exc
    finally:
        await producer.stop()
