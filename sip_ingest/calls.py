"""A call as the ingest node sees it, and the CallEvent snapshots it publishes.

Each CallEvent is a full snapshot of what is known about the call at that moment (the contract
the metadata processor relies on: the newest snapshot is the call's state). The clear caller and
callee numbers exist only here and on the short-retention ``ingest.metadata`` topic; the stream
processors replace them with a keyed hash and a masked form.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

EndReason = Literal[
    "NORMAL_CLEARING",
    "CALLER_HANGUP",
    "AGENT_HANGUP",
    "CANCELLED",
    "TIMEOUT",
    "MEDIA_TIMEOUT",
    "FAILED",
    "REJECTED",
]


@dataclass
class LegStats:
    packets_received: int = 0
    packets_lost: int = 0
    jitter_ms: float = 0.0
    leg: str | None = None
    #: audio chunks the leg emitted (its last chunk seq + 1): the recorder's completeness check
    chunks: int = 0


@dataclass
class Call:
    call_id: str
    sip_call_id: str
    workspace_id: str
    trunk_id: str | None
    agent_id: str | None
    caller_number: str
    callee_number: str
    direction: Literal["INBOUND", "OUTBOUND"] = "INBOUND"
    recording_enabled: bool = True
    suppressed: bool = False
    suppression_reason: str | None = None
    siprec: bool = False
    codec: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: EndReason | None = None
    tool_invocations: list[dict[str, Any]] = field(default_factory=list)
    dtmf_events: int = 0

    @property
    def audio_allowed(self) -> bool:
        """Suppressed calls and agents with recording off publish no audio at all."""
        return self.recording_enabled and not self.suppressed

    def event(
        self,
        kind: Literal["STARTED", "ANSWERED", "ENDED"],
        node: str,
        legs: list[LegStats] | None = None,
    ) -> dict[str, Any]:
        now = datetime.now(UTC)
        stats = legs or []
        duration = None
        if self.ended_at is not None and self.answered_at is not None:
            duration = int((self.ended_at - self.answered_at).total_seconds() * 1000)
        elif self.ended_at is not None:
            duration = 0
        return {
            "event_id": str(uuid.uuid4()),
            "call_id": self.call_id,
            "workspace_id": self.workspace_id,
            "kind": kind,
            "occurred_at": now,
            "call_started_at": self.started_at,
            "answered_at": self.answered_at,
            "ended_at": self.ended_at,
            "duration_ms": duration,
            "caller_number": self.caller_number,
            "callee_number": self.callee_number,
            "direction": self.direction,
            "trunk_id": self.trunk_id,
            "agent_id": self.agent_id,
            "codec": self.codec,
            "end_reason": self.end_reason,
            "recording_enabled": self.recording_enabled,
            "suppressed": self.suppressed,
            "suppression_reason": self.suppression_reason,
            "tool_invocations": list(self.tool_invocations),
            "packets_received": sum(s.packets_received for s in stats) if stats else None,
            "packets_lost": sum(s.packets_lost for s in stats) if stats else None,
            "jitter_ms": max((s.jitter_ms for s in stats), default=None) if stats else None,
            "audio_chunks": (
                {s.leg: s.chunks for s in stats if s.leg}
                if stats and kind == "ENDED" and self.audio_allowed
                else None
            ),
            "sip_call_id": self.sip_call_id,
            "ingest_node": node,
        }
