"""Sealing a call event: the pure part of the metadata processor (no Kafka, no I/O).

What leaves here carries its workspace's region and an ``expires_at`` (see
:mod:`streams.governance` for why it counts from the call's start), no clear phone number (a
keyed hash for lookups, a masked form for people, the full numbers only sealed under the call's
data key), redacted tool arguments, and the suppression decision of the workspace's rules.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from callvault.control.workspaces import WorkspacePolicy
from streams.errors import InvalidRecord
from streams.governance import (
    CallKey,
    call_start,
    expires_at,
    redact_tool_invocations,
    require_policy,
    seal_numbers,
)

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


def seal_call_event(
    event: Mapping[str, Any],
    policy: WorkspacePolicy | None,
    *,
    pepper: bytes,
    key: CallKey,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Turn an ``ingest.metadata`` CallEvent into a ``sealed.metadata`` SealedCallEvent."""
    now = now or datetime.now(UTC)
    policy = require_policy(event["workspace_id"], policy)
    started = call_start(event, "call_started_at", now)
    for field in ("caller_number", "callee_number"):
        if not normalise_number(event[field]):
            raise InvalidRecord(f"{field} contains no digits")
    if not event["call_id"]:
        raise InvalidRecord("call_id is empty")
    workspace = event["workspace_id"]
    suppressed, reason = suppression(event, policy)
    invocations, redactions = redact_tool_invocations(list(event["tool_invocations"]))
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
        "suppressed": suppressed,
        "suppression_reason": reason,
        "tool_invocations": invocations,
        "packets_received": event["packets_received"],
        "packets_lost": event["packets_lost"],
        "jitter_ms": event["jitter_ms"],
        "audio_chunks": event.get("audio_chunks"),
        "redaction_count": redactions,
        "sealed_at": now,
        "policy_version": policy.version,
        "numbers_ciphertext": seal_numbers(event, policy.region, key),
    }


def suppression(event: Mapping[str, Any], policy: WorkspacePolicy) -> tuple[bool, str | None]:
    """The edge's decision, or the workspace's rules if the edge missed one (a rule added while
    the call rang, or an edge bug): a call is suppressed if either says so."""
    if event["suppressed"]:
        return True, event["suppression_reason"]
    rule = policy.suppression_for(
        caller=event["caller_number"], callee=event["callee_number"],
        agent_id=event["agent_id"], trunk_id=event["trunk_id"],
    )  # fmt: skip
    return (True, f"rule:{rule}") if rule else (False, None)
