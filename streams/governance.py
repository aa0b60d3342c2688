"""The pure governance steps every artifact of a call goes through (no Kafka, no I/O).

Order, for every kind: policy (refused without one) -> suppression (content of a suppressed call
or an agent with recording off is dropped, never sealed) -> PCI redaction (text) -> region tag ->
retention stamp -> AES-256-GCM seal under the call's data key. What leaves here is a sealed record
or a :class:`Dropped` decision; nothing else.

``expires_at`` is measured from the call's *start*, on every artifact: each one carries
``call_started_at``, so the audio, transcript and metadata processors derive the same instant
independently, without waiting for the call to end or sharing state. Compared with "call end +
retention", a call is kept its own duration less than the retention period, never longer: the
promise ("deleted after N days") errs on the safe side, and the maximum call length bounds the
difference (4 h by default).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from callvault.control.workspaces import WorkspacePolicy
from callvault.crypto.envelope import Aad, seal
from streams.errors import InvalidRecord, UnknownWorkspace, WorkspaceDeleted
from streams.redaction import redact

#: Artifact kinds as bound into the ciphertext's associated data.
ArtifactKind = Literal["audio", "transcript", "summary", "numbers"]

_MAX_CLOCK_SKEW = timedelta(days=1)


@dataclass(frozen=True)
class CallKey:
    """The call's data key as the key ring handed it out. ``repr`` never shows the key."""

    key_id: str
    key: bytes

    def __repr__(self) -> str:
        return f"CallKey({self.key_id!r})"


@dataclass(frozen=True)
class Dropped:
    """Content that must not be stored: why (a metric label), never what."""

    reason: Literal["suppressed", "recording_off", "erased"]


def require_policy(workspace_id: str, policy: WorkspacePolicy | None) -> WorkspacePolicy:
    if policy is None:
        raise UnknownWorkspace(f"no policy for workspace {workspace_id!r}")
    if policy.deleted:
        raise WorkspaceDeleted(f"workspace {policy.workspace_id!r} has been deleted")
    return policy


def expires_at(call_started_at: datetime, retention_days: int) -> datetime:
    return call_started_at + timedelta(days=retention_days)


def call_start(record: Mapping[str, Any], fallback_field: str, now: datetime) -> datetime:
    """The call's start as the record states it. Records written before ``call_started_at``
    existed fall back to their own first timestamp, which is at or after the start."""
    started = record.get("call_started_at") or record[fallback_field]
    if started > now + _MAX_CLOCK_SKEW:
        raise InvalidRecord(f"call_started_at {started.isoformat()} is in the future")
    return started


def content_verdict(
    record: Mapping[str, Any], policy: WorkspacePolicy, *, known_suppressed: bool
) -> Dropped | None:
    """Suppression in depth: the record's own flag, what the metadata stream said about the
    call, and the per-agent recording policy as it is *now* (a policy change applies to
    content processed after it)."""
    if record.get("suppressed") or known_suppressed:
        return Dropped("suppressed")
    if not policy.recording_enabled_for(record.get("agent_id")):
        return Dropped("recording_off")
    return None


def aad(record: Mapping[str, Any], region: str, kind: ArtifactKind) -> Aad:
    return Aad(record["workspace_id"], record["call_id"], kind, region)


def _require_ids(record: Mapping[str, Any]) -> None:
    if not record["call_id"]:
        raise InvalidRecord("call_id is empty")
    if not record["workspace_id"]:
        raise InvalidRecord("workspace_id is empty")


def seal_audio_chunk(
    chunk: Mapping[str, Any], policy: WorkspacePolicy, key: CallKey, *, now: datetime
) -> dict[str, Any]:
    """``ingest.audio`` AudioChunk -> ``sealed.audio`` SealedAudioChunk."""
    _require_ids(chunk)
    started = call_start(chunk, "captured_at", now)
    payload: bytes = chunk["payload"]
    return {
        "call_id": chunk["call_id"],
        "workspace_id": chunk["workspace_id"],
        "region": policy.region,
        "expires_at": expires_at(started, policy.retention_days),
        "leg": chunk["leg"],
        "seq": chunk["seq"],
        "first_rtp_seq": chunk["first_rtp_seq"],
        "rtp_timestamp": chunk["rtp_timestamp"],
        "captured_at": chunk["captured_at"],
        "codec": chunk["codec"],
        "sample_rate": chunk["sample_rate"],
        "payload_bytes": len(payload),
        "missing_packets": chunk["missing_packets"],
        "ciphertext": seal(key.key, key.key_id, payload, aad(chunk, policy.region, "audio")),
        "sealed_at": now,
        "policy_version": policy.version,
    }


def transcript_kind(segment: Mapping[str, Any]) -> ArtifactKind:
    return "summary" if segment["kind"] == "SUMMARY" else "transcript"


def seal_transcript_segment(
    segment: Mapping[str, Any], policy: WorkspacePolicy, key: CallKey, *, now: datetime
) -> dict[str, Any]:
    """``ingest.transcript`` TranscriptSegment -> redacted -> ``sealed.transcript``."""
    _require_ids(segment)
    started = call_start(segment, "started_at", now)
    redacted = redact(segment["text"])
    plaintext = redacted.text.encode()
    kind = transcript_kind(segment)
    return {
        "call_id": segment["call_id"],
        "workspace_id": segment["workspace_id"],
        "region": policy.region,
        "expires_at": expires_at(started, policy.retention_days),
        "segment_id": segment["segment_id"],
        "kind": segment["kind"],
        "speaker": segment["speaker"],
        "started_at": segment["started_at"],
        "ended_at": segment["ended_at"],
        "language": segment["language"],
        "confidence": segment["confidence"],
        "redaction_count": redacted.count,
        "ciphertext": seal(key.key, key.key_id, plaintext, aad(segment, policy.region, kind)),
        "sealed_at": now,
        "policy_version": policy.version,
    }


def redact_tool_invocations(invocations: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Tool arguments can carry what the caller said ("take_payment" with a card number): they
    pass the same redactor as transcripts. Returns the invocations and the redaction count."""
    out, count = [], 0
    for inv in invocations:
        args = inv.get("arguments_redacted")
        if args is not None:
            r = redact(args)
            count += r.count
            inv = {**inv, "arguments_redacted": r.text}
        out.append(inv)
    return out, count


def seal_numbers(
    event: Mapping[str, Any], region: str, key: CallKey
) -> bytes:  # the only copy of the full numbers downstream of ingest
    plaintext = json.dumps(
        {"caller": event["caller_number"], "callee": event["callee_number"]}, sort_keys=True
    ).encode()
    return seal(key.key, key.key_id, plaintext, aad(event, region, "numbers"))


def utcnow() -> datetime:
    return datetime.now(UTC)
