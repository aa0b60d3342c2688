"""SIP extensions: which AI agent a number or SIP user part dialled into a workspace reaches.

An extension (``"201"``, ``"+442071838750"``, ``"sales"``) is what a PBX puts in the To (or
Request-URI) user part of an INVITE. The ingest node looks it up in its live view of the
compacted ``control.extensions`` topic to attribute the call to an agent, and the agent id is
what per-agent recording policy and ``agent:`` suppression rules key on: an extension pointing
at the wrong agent records calls that should not be recorded, so every change is validated,
versioned and an audit event (``extension.add`` / ``extension.update`` / ``extension.remove``).

Records are keyed ``"<workspace_id>/<extension>"`` (neither part can contain ``/``), so one
workspace's ``201`` is not another's. Removal writes a tombstone: compaction then drops the key
from the log, and nothing routes to it from the moment a node has read the tombstone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import unquote

from callvault.audit import AuditLog, audit_event, cli_actor
from callvault.control.directory import ControlDirectory
from callvault.control.view import CompactedView
from callvault.control.workspaces import WorkspacePolicy, workspace_view
from callvault.errors import ControlError
from callvault.kafka_client import kafka_options
from callvault.settings import Settings
from callvault.topics import Topics

MIN_LENGTH, MAX_LENGTH = 2, 32
#: digits, keypad symbols and SIP user-part letters; '+' only in front (E.164)
_EXTENSION = re.compile(r"^\+?[0-9a-z*#._-]+$")
_AGENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SPACES = re.compile(r"\s+")


def normalize_extension(dialled: str) -> str:
    """The stored form of a dialled extension: whitespace removed, letters lower-cased.

    Operators type ``+44 20 7183 8750`` and PBXs send ``+442071838750``; both must name the same
    record, so adding and looking up go through this one function. A leading ``+`` is kept: it
    distinguishes an E.164 number from a short internal extension of the same digits.
    """
    return _SPACES.sub("", dialled).lower()


def validate_extension(extension: str) -> str:
    """The normalised extension, or ControlError saying what an extension may be."""
    ext = normalize_extension(extension)
    if not (MIN_LENGTH <= len(ext) <= MAX_LENGTH and _EXTENSION.match(ext)):
        raise ControlError(
            f"extension {extension!r} must be {MIN_LENGTH}-{MAX_LENGTH} characters: digits, "
            "'*', '#', lowercase letters, '.', '_' or '-', with an optional leading '+'"
        )
    return ext


def validate_agent_id(agent_id: str) -> str:
    if not _AGENT_ID.match(agent_id):
        raise ControlError(f"agent id {agent_id!r} must be 1-64 letters, digits, '.', '_' or '-'")
    return agent_id


def extension_key(workspace_id: str, extension: str) -> str:
    """The record key: ``<workspace_id>/<normalised extension>``."""
    return f"{workspace_id}/{normalize_extension(extension)}"


@dataclass(frozen=True)
class Extension:
    workspace_id: str
    extension: str
    agent_id: str
    label: str | None = None
    version: int = 1
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_by: str = ""

    @property
    def key(self) -> str:
        return f"{self.workspace_id}/{self.extension}"

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "updated_at": self.updated_at.isoformat()}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Extension:
        return cls(**{k: rec[k] for k in cls.__dataclass_fields__})


def extension_view(
    settings: Settings, on_change: Callable[[str, Extension | None], None] | None = None
) -> CompactedView[Extension]:
    """Extensions by ``<workspace>/<extension>`` (what an INVITE's To user part names)."""
    return CompactedView(
        kafka_options(settings),
        Topics(settings).name("control.extensions"),
        "Extension",
        Extension.from_record,
        request_timeout_s=settings.kafka.request_timeout_s,
        on_change=on_change,
    )


def lookup_in(view: CompactedView[Extension], workspace_id: str, dialled: str) -> Extension | None:
    """The extension ``dialled`` reaches in ``workspace_id``, if any.

    ``dialled`` comes straight from a SIP URI, whose user part keeps its %-escapes (RFC 3261
    19.1.2), so ``%2B44...`` is unescaped to ``+44...`` before normalising.
    """
    if not dialled:
        return None
    return view.get(extension_key(workspace_id, unquote(dialled)))


class ExtensionDirectory(ControlDirectory[Extension]):
    """Add, change, remove and read a workspace's extensions (what ``callvault extension``
    drives); every change is audited as ``actor`` here, so no caller can skip the record."""

    schema = "Extension"

    def __init__(self, settings: Settings, *, actor: str | None = None) -> None:
        super().__init__(settings, extension_view(settings))
        self._actor = actor or cli_actor()
        # read-only: extensions may only be added to a workspace that exists and is not erased
        self._workspaces = workspace_view(settings)

    async def __aenter__(self) -> Self:
        await self._workspaces.start()
        try:
            return await super().__aenter__()
        except BaseException:
            await self._workspaces.stop()
            raise

    async def __aexit__(self, *exc: object) -> None:
        try:
            await super().__aexit__(*exc)
        finally:
            await self._workspaces.stop()

    def list(self, workspace_id: str) -> list[Extension]:
        self._workspace(workspace_id)
        return sorted(
            (e for e in self._view.items().values() if e.workspace_id == workspace_id),
            key=lambda e: e.extension,
        )

    def lookup(self, workspace_id: str, dialled: str) -> Extension | None:
        return lookup_in(self._view, workspace_id, dialled)

    def get(self, workspace_id: str, extension: str) -> Extension:
        found = self._view.get(extension_key(workspace_id, extension))
        if found is None:
            raise ControlError(
                f"extension {normalize_extension(extension)!r} does not exist in workspace "
                f"{workspace_id!r}"
            )
        return found

    async def add(
        self, workspace_id: str, extension: str, *, agent_id: str, label: str | None = None
    ) -> Extension:
        ext = validate_extension(extension)
        policy = self._workspace(workspace_id)
        current = self._view.get(extension_key(workspace_id, ext))
        if current is not None:
            raise ControlError(
                f"extension {ext!r} already exists in workspace {workspace_id!r} "
                f"(agent {current.agent_id!r}); change it with 'extension set' or remove it first"
            )
        added = Extension(
            workspace_id=workspace_id,
            extension=ext,
            agent_id=validate_agent_id(agent_id),
            label=label or None,
            updated_by=self._actor,
        )
        await self._put(added.key, added.to_record())
        await self._record("extension.add", added, policy)
        return added

    async def update(
        self,
        workspace_id: str,
        extension: str,
        *,
        agent_id: str | None = None,
        label: str | None = None,
    ) -> Extension:
        """Point the extension at another agent and/or relabel it (``label=""`` clears it)."""
        policy = self._workspace(workspace_id)
        current = self.get(workspace_id, extension)
        if agent_id is None and label is None:
            raise ControlError("nothing to change: give an agent or a label")
        updated = replace(
            current,
            agent_id=validate_agent_id(agent_id) if agent_id is not None else current.agent_id,
            label=(label or None) if label is not None else current.label,
            version=current.version + 1,
            updated_at=datetime.now(UTC),
            updated_by=self._actor,
        )
        await self._put(updated.key, updated.to_record())
        await self._record("extension.update", updated, policy)
        return updated

    async def remove(self, workspace_id: str, extension: str) -> Extension:
        """Tombstone the extension; returns what it was. Allowed in an erased workspace too, so
        its leftovers can be cleaned up."""
        current = self.get(workspace_id, extension)
        await self._delete(current.key)
        await self._record("extension.remove", current, self._workspaces.get(workspace_id))
        return current

    def _workspace(self, workspace_id: str) -> WorkspacePolicy:
        policy = self._workspaces.get(workspace_id)
        if policy is None or policy.deleted:
            raise ControlError(f"workspace {workspace_id!r} does not exist")
        return policy

    async def _record(self, action: str, ext: Extension, policy: WorkspacePolicy | None) -> None:
        await AuditLog(self._settings, self.producer).record(
            audit_event(
                action,
                actor_kind="USER",
                actor_id=self._actor,
                workspace_id=ext.workspace_id,
                region=policy.region if policy is not None else None,
                target=f"extension:{ext.key}",
                details={
                    "agent_id": ext.agent_id,
                    "label": ext.label or "",
                    "version": ext.version,
                },
            )
        )
