"""Sealing a call event: the pure part of the metadata processor (no Kafka, no I/O).

What leaves here carries its workspace's region and an ``expires_at``, and no clear phone number.

``expires_at`` is measured from the call's *start*, not its end: every artifact of a call (audio
chunks, transcript segments, each metadata event) already knows the start instant while the call
is still running, so every processor derives the same expiry independently, and no artifact can
outlive the promised retention. The price is that a call is kept retention-minus-its-duration
after it ended, which errs on the side of the promise.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from callvault.control.workspaces import WorkspacePolicy
from streams.errors import InvalidRecord, UnknownWorkspace, WorkspaceDeleted

_MAX_CLOCK_SKEW = timedelta(days=1)
_PHONE_CHARS = set("+0123456789")


def number_hash(pepper: bytes, workspace_id: str, number: str) -> str:
    """Keyed, per-workspace hash: analysts can join and look up a caller without the number, and
    the same caller in two workspaces is not linkable."""
    msg = f"{workspace_id}\x00{normalise_number(number)}".encode()
    return hmac.new(pepper, msg, hashlib.sha256).hexdigest()


def normalise_number(number: str) -> str:
    return "".join(ch for ch in number if ch in _PHONE_CHARS)


def mask_number(number: str) -> str:
    """Enough to recognise a number on screen ("+4479*****23"), not enough to dial it."""
    n = normalise_number(number)
    if len(n) <= 6:
        return "*" * len(n)
    return n[:5] + "*" * (len(n) - 7) + n[-2:]


def expires_at(call_started_at: datetime, retention_days: int) -> datetime:
    return call_started_at + timedelta(days=retention_days)


def seal_call_event(
    event: Mapping[str, Any],
    policy: WorkspacePolicy | None,
    *,
    pepper: bytes,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Turn an ``ingest.metadata`` CallEvent into a ``sealed.metadata`` SealedCallEvent."""
    now = now or datetime.now(UTC)
    if policy is None:
        raise UnknownWorkspace(f"no policy for workspace {event.get('workspace_id')!r}")
    if policy.deleted:
        raise WorkspaceDeleted(f"workspace {policy.workspace_id!r} has been deleted")
    started = event["call_started_at"]
    if started > now + _MAX_CLOCK_SKEW:
        raise InvalidRecord(f"call_started_at {started.isoformat()} is in the future")
    for field in ("caller_number", "callee_number"):
        if not normalise_number(event[field]):
            raise InvalidRecord(f"{field} contains no digits")
    if not event["call_id"]:
        raise InvalidRecord("call_id is empty")
    workspace = event["workspace_id"]
    return {
        "event_id": event["event_id"],
        "call_id": event["call_id"],
        "workspace_id": workspace,
        "region": policy.region,
        "expires_at": expires_at(started, policy.retention_days),
        "kind": event["kind"],
        "occurred_at": event["occurred_at"],
        "call_started_at": started,
        "answered_at": event["answered_at"],
        "ended_at": event["ended_at"],
        "duration_ms": event["duration_ms"],
        "caller_number_hash": number_hash(pepper, workspace, event["caller_number"]),
        "caller_number_masked": mask_number(event["caller_number"]),
        "callee_number_hash": number_hash(pepper, workspace, event["callee_number"]),
        "callee_number_masked": mask_number(event["callee_number"]),
        "direction": event["direction"],
        "trunk_id": event["trunk_id"],
        "agent_id": event["agent_id"],
        "codec": event["codec"],
        "end_reason": event["end_reason"],
        "recording_enabled": bool(
            event["recording_enabled"] and policy.recording_enabled_for(event["agent_id"])
        ),
        "suppressed": event["suppressed"],
        "suppression_reason": event["suppression_reason"],
        "tool_invocations": list(event["tool_invocations"]),
        "packets_received": event["packets_received"],
        "packets_lost": event["packets_lost"],
        "jitter_ms": event["jitter_ms"],
        "redaction_count": 0,
        "sealed_at": now,
        "policy_version": policy.version,
    }
