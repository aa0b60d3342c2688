"""What the agent API needs to know about calls, and where tool invocations go.

Tool invocations are not a topic of their own: they travel inside the call's metadata
(``CallEvent.tool_invocations``), which the call layer publishes. So the API hands them to the
call layer through :class:`CallRegistry`, and asks it which workspace a call belongs to (a call
of another workspace is refused) and whether its content may be stored (a suppressed call, or an
agent with recording off, stores no transcript either).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

#: One tool invocation shaped like the Avro ``callvault.ToolInvocation`` record (``invoked_at`` a
#: timezone-aware datetime), so the call layer can put it into ``CallEvent.tool_invocations``.
ToolInvocationRecord = Mapping[str, Any]


@dataclass(frozen=True)
class CallInfo:
    workspace_id: str
    #: Mirrors ``CallEvent.recording_enabled`` and ``suppressed``.
    recording_enabled: bool = True
    suppressed: bool = False
    agent_id: str | None = None
    started_at: datetime | None = None

    def artifact_context(self) -> dict[str, Any]:
        """The fields every content record of the call carries (see ``AudioChunk``), so the
        governance processors can stamp expiry and apply recording policy per record."""
        return {
            "call_started_at": self.started_at,
            "agent_id": self.agent_id,
            "suppressed": self.suppressed,
        }

    @property
    def content_allowed(self) -> bool:
        """Transcript and summary may be published (same rule as audio)."""
        return self.recording_enabled and not self.suppressed


class CallRegistry(Protocol):
    """Implemented by the call layer. Calls must stay known for a while after they end: the
    agent posts the summary (and late transcript segments) after hang-up."""

    def lookup(self, call_id: str) -> CallInfo | None:
        """The call, or None if this node does not know it."""
        ...

    def add_tool_invocations(
        self, call_id: str, workspace_id: str, invocations: Sequence[ToolInvocationRecord]
    ) -> bool:
        """Attach invocations to the call's next metadata snapshot; False if the call is unknown
        (or ended too long ago for its metadata to change)."""
        ...


@dataclass
class _Call:
    info: CallInfo
    tool_invocations: list[ToolInvocationRecord] = field(default_factory=list)


class InMemoryCallRegistry:
    """A registry for tests and tools: calls are registered and forgotten by hand."""

    def __init__(self) -> None:
        self._calls: dict[str, _Call] = {}
        self._lock = threading.Lock()

    def register(
        self,
        call_id: str,
        workspace_id: str,
        *,
        recording_enabled: bool = True,
        suppressed: bool = False,
        agent_id: str | None = None,
        started_at: datetime | None = None,
    ) -> None:
        info = CallInfo(
            workspace_id, recording_enabled, suppressed, agent_id=agent_id, started_at=started_at
        )
        with self._lock:
            self._calls[call_id] = _Call(info)

    def forget(self, call_id: str) -> None:
        with self._lock:
            self._calls.pop(call_id, None)

    def tool_invocations(self, call_id: str) -> list[ToolInvocationRecord]:
        with self._lock:
            call = self._calls.get(call_id)
            return list(call.tool_invocations) if call else []

    def lookup(self, call_id: str) -> CallInfo | None:
        with self._lock:
            call = self._calls.get(call_id)
            return call.info if call else None

    def add_tool_invocations(
        self, call_id: str, workspace_id: str, invocations: Sequence[ToolInvocationRecord]
    ) -> bool:
        with self._lock:
            call = self._calls.get(call_id)
            if call is None or call.info.workspace_id != workspace_id:
                return False
            call.tool_invocations.extend(invocations)
            return True
