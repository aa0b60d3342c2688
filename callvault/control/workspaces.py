"""Workspace policies: home region, retention, recording defaults — the input of every processor.

Policies are written to the compacted ``control.workspaces`` topic keyed by workspace id; each
write carries a ``version`` one higher than the last, so a reader can tell which policy a record
was processed under.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from callvault.audit import AuditLog, audit_event, cli_actor
from callvault.control.directory import ControlDirectory
from callvault.control.suppression import matching_rule, validate_rule
from callvault.control.view import CompactedView
from callvault.errors import ControlError
from callvault.kafka_client import kafka_options
from callvault.settings import Settings
from callvault.topics import Topics

MIN_RETENTION_DAYS = 7
MAX_RETENTION_DAYS = 365
_WORKSPACE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}$")


@dataclass(frozen=True)
class WorkspacePolicy:
    workspace_id: str
    name: str
    region: str
    retention_days: int = 90
    recording_default: bool = True
    agent_recording: dict[str, bool] = field(default_factory=dict)
    suppression_rules: list[str] = field(default_factory=list)
    key_id: str | None = None
    version: int = 1
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    deleted: bool = False

    def validate(self, settings: Settings) -> None:
        if not _WORKSPACE_ID.match(self.workspace_id):
            raise ControlError(
                f"workspace id {self.workspace_id!r} must be 2-63 lowercase letters, digits, "
                "'-' or '_', starting with a letter or digit"
            )
        if self.region not in settings.regions:
            raise ControlError(
                f"region {self.region!r} is not one of {', '.join(settings.regions)}"
            )
        for rule in self.suppression_rules:
            validate_rule(rule)
        if not MIN_RETENTION_DAYS <= self.retention_days <= MAX_RETENTION_DAYS:
            raise ControlError(
                f"retention_days must be {MIN_RETENTION_DAYS} to {MAX_RETENTION_DAYS}, "
                f"got {self.retention_days}"
            )

    def recording_enabled_for(self, agent_id: str | None) -> bool:
        if agent_id is not None and agent_id in self.agent_recording:
            return self.agent_recording[agent_id]
        return self.recording_default

    def suppression_for(
        self, *, caller: str | None, callee: str | None, agent_id: str | None, trunk_id: str | None
    ) -> str | None:
        """The rule that suppresses such a call (see :mod:`callvault.control.suppression`)."""
        return matching_rule(
            self.suppression_rules, caller=caller, callee=callee, agent_id=agent_id,
            trunk_id=trunk_id,
        )  # fmt: skip

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["updated_at"] = self.updated_at.isoformat()
        return out

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> WorkspacePolicy:
        return cls(
            workspace_id=rec["workspace_id"],
            name=rec["name"],
            region=rec["region"],
            retention_days=rec["retention_days"],
            recording_default=rec["recording_default"],
            agent_recording=dict(rec.get("agent_recording") or {}),
            suppression_rules=list(rec.get("suppression_rules") or []),
            key_id=rec.get("key_id"),
            version=rec["version"],
            updated_at=rec["updated_at"],
            deleted=rec.get("deleted", False),
        )


def _detail(value: Any) -> Any:
    """A policy change as an audit detail: overrides as "agent=on|off", lists joined."""
    if isinstance(value, dict):
        return ",".join(f"{k}={'on' if v else 'off'}" for k, v in sorted(value.items()))
    if isinstance(value, list):
        return ";".join(value)
    return value


def workspace_view(
    settings: Settings, on_change: Callable[[str, WorkspacePolicy | None], None] | None = None
) -> CompactedView[WorkspacePolicy]:
    return CompactedView(
        kafka_options(settings),
        Topics(settings).control_workspaces,
        "WorkspacePolicy",
        WorkspacePolicy.from_record,
        request_timeout_s=settings.kafka.request_timeout_s,
        on_change=on_change,
    )


class WorkspaceDirectory(ControlDirectory[WorkspacePolicy]):
    """Create, change and read workspace policies (what ``callvault workspace`` drives).

    Writes go through a read of the current view first so versions increase monotonically and
    ``create`` cannot silently overwrite an existing workspace.
    """

    schema = "WorkspacePolicy"

    def __init__(self, settings: Settings, *, actor: str | None = None) -> None:
        super().__init__(settings, workspace_view(settings))
        self._actor = actor or cli_actor()

    def list(self) -> list[WorkspacePolicy]:
        return sorted(
            (p for p in self._view.items().values() if not p.deleted),
            key=lambda p: p.workspace_id,
        )

    def get(self, workspace_id: str) -> WorkspacePolicy:
        policy = self._view.get(workspace_id)
        if policy is None or policy.deleted:
            raise ControlError(f"workspace {workspace_id!r} does not exist")
        return policy

    def policy(self, workspace_id: str) -> WorkspacePolicy | None:
        """The workspace's latest policy, deleted (erased) ones included."""
        return self._view.get(workspace_id)

    async def mark_deleted(self, workspace_id: str) -> WorkspacePolicy:
        """Stop the workspace for good (erasure): ingest refuses its calls, sealers dead-letter
        its records, writers drop them. Idempotent."""
        current = self._view.get(workspace_id)
        if current is None:
            raise ControlError(f"workspace {workspace_id!r} does not exist")
        if current.deleted:
            return current
        return await self._write(
            replace(
                current, deleted=True, version=current.version + 1, updated_at=datetime.now(UTC)
            )
        )

    async def create(
        self,
        workspace_id: str,
        *,
        name: str | None = None,
        region: str,
        retention_days: int | None = None,
    ) -> WorkspacePolicy:
        current = self._view.get(workspace_id)
        if current is not None and not current.deleted:
            raise ControlError(f"workspace {workspace_id!r} already exists")
        if current is not None:
            # its keys were shredded, and a shredded id stays shredded: the key ring would
            # refuse every call of a workspace re-created under the same id
            raise ControlError(
                f"workspace id {workspace_id!r} belonged to an erased workspace and cannot be "
                "reused; choose another id"
            )
        policy = WorkspacePolicy(
            workspace_id=workspace_id,
            name=name or workspace_id,
            region=region,
            retention_days=retention_days or self._settings.default_retention_days,
            version=(current.version + 1) if current else 1,
        )
        await self._write(policy)
        await self._audit(
            "workspace.create", policy,
            {"region": policy.region, "retention_days": policy.retention_days},
        )  # fmt: skip
        return policy

    async def update(self, workspace_id: str, **changes: Any) -> WorkspacePolicy:
        current = self.get(workspace_id)
        if "region" in changes and changes["region"] != current.region:
            # Moving a workspace is a data migration, not a flag flip: every store is per region.
            raise ControlError(
                f"workspace {workspace_id!r} lives in {current.region}; changing the home region "
                "requires a migration and is refused"
            )
        policy = replace(
            current, **changes, version=current.version + 1, updated_at=datetime.now(UTC)
        )
        await self._write(policy)
        await self._audit("workspace.update", policy, {k: _detail(v) for k, v in changes.items()})
        return policy

    async def _audit(self, action: str, policy: WorkspacePolicy, details: dict[str, Any]) -> None:
        """Every change is an audit event, written here so no caller can skip it."""
        await AuditLog(self._settings, self.producer).record(audit_event(
            action, actor_kind="USER", actor_id=self._actor, workspace_id=policy.workspace_id,
            region=policy.region, target=f"workspace:{policy.workspace_id}",
            details={**details, "version": policy.version},
        ))  # fmt: skip

    async def _write(self, policy: WorkspacePolicy) -> WorkspacePolicy:
        policy.validate(self._settings)
        await self._put(policy.workspace_id, policy.to_record())
        return policy
