"""SIP trunk credentials: issued, rotated and revoked here, enforced by every ingest node.

The compacted ``control.trunks`` topic is keyed by the digest *username* — the identity a PBX
presents — so an ingest node's live view answers "may this username call?" with one lookup.
Only digest material (HA1 for MD5 and SHA-256) is stored; the 24-character password exists
once, in the return value of :meth:`TrunkDirectory.create` / :meth:`rotate`, to be shown to the
operator and never again. Revocation writes a REVOKED record (ingest nodes refuse it as soon as
they read it) and every change is an audit event.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from callvault.audit import AuditLog, audit_event, cli_actor
from callvault.control.directory import ControlDirectory
from callvault.control.view import CompactedView
from callvault.control.workspaces import WorkspaceDirectory
from callvault.errors import ControlError
from callvault.kafka_client import kafka_options
from callvault.settings import Settings
from callvault.topics import Topics
from sip_ingest.sip.digest import ha1

PASSWORD_LENGTH = 24
_ALPHABET = string.ascii_letters + string.digits
_TRUNK_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}$")

Status = Literal["ACTIVE", "REVOKED"]


def generate_password() -> str:
    """24 characters from 62 symbols: ~143 bits, from the OS CSPRNG."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(PASSWORD_LENGTH))


@dataclass(frozen=True)
class TrunkCredential:
    trunk_id: str
    workspace_id: str
    username: str
    realm: str
    ha1_md5: str
    ha1_sha256: str
    status: Status = "ACTIVE"
    version: int = 1
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    rotated_from: str | None = None

    @property
    def active(self) -> bool:
        return self.status == "ACTIVE"

    def ha1_for(self, algorithm: str) -> str | None:
        return {"MD5": self.ha1_md5, "SHA-256": self.ha1_sha256}.get(algorithm)

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> dict[str, Any]:
        """What operators see: no digest material."""
        return {
            "trunk_id": self.trunk_id,
            "workspace_id": self.workspace_id,
            "username": self.username,
            "realm": self.realm,
            "status": self.status,
            "version": self.version,
            "updated_at": self.updated_at.isoformat(),
            "rotated_from": self.rotated_from,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> TrunkCredential:
        return cls(**{k: rec[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class IssuedCredential:
    credential: TrunkCredential
    password: str  # shown once

    def to_json(self) -> dict[str, Any]:
        return {**self.credential.to_json(), "password": self.password}


def trunk_view(
    settings: Settings, on_change: Callable[[str, TrunkCredential | None], None] | None = None
) -> CompactedView[TrunkCredential]:
    """Credentials by digest username (what a REGISTER or INVITE names)."""
    return CompactedView(
        kafka_options(settings),
        Topics(settings).name("control.trunks"),
        "TrunkCredential",
        TrunkCredential.from_record,
        request_timeout_s=settings.kafka.request_timeout_s,
        on_change=on_change,
    )


class TrunkDirectory(ControlDirectory[TrunkCredential]):
    schema = "TrunkCredential"

    def __init__(self, settings: Settings, *, actor: str | None = None) -> None:
        super().__init__(settings, trunk_view(settings))
        self._actor = actor or cli_actor()

    def list(self, workspace_id: str | None = None) -> list[TrunkCredential]:
        return sorted(
            (
                c
                for c in self._view.items().values()
                if workspace_id is None or c.workspace_id == workspace_id
            ),
            key=lambda c: (c.workspace_id, c.trunk_id, c.version),
        )

    def active(self, trunk_id: str) -> TrunkCredential:
        for cred in self._view.items().values():
            if cred.trunk_id == trunk_id and cred.active:
                return cred
        raise ControlError(f"trunk {trunk_id!r} has no active credential")

    async def create(self, workspace_id: str, trunk_id: str) -> IssuedCredential:
        if not _TRUNK_ID.match(trunk_id):
            raise ControlError(
                f"trunk id {trunk_id!r} must be 2-63 lowercase letters, digits, '-' or '_'"
            )
        async with WorkspaceDirectory(self._settings) as workspaces:
            policy = workspaces.get(workspace_id)  # refuses unknown workspaces
        if any(c.trunk_id == trunk_id and c.active for c in self._view.items().values()):
            raise ControlError(f"trunk {trunk_id!r} already exists; rotate or revoke it")
        issued = self._issue(workspace_id, trunk_id, rotated_from=None)
        await self._write(issued.credential)
        await self._record("trunk.credential.issue", issued.credential, policy.region)
        return issued

    async def rotate(self, trunk_id: str) -> IssuedCredential:
        old = self.active(trunk_id)
        issued = self._issue(old.workspace_id, trunk_id, rotated_from=old.username)
        await self._write(issued.credential)
        await self._write(self._revoked(old))
        await self._record(
            "trunk.credential.rotate", issued.credential, None, previous=old.username
        )
        return issued

    async def revoke(self, trunk_id: str) -> TrunkCredential:
        revoked = self._revoked(self.active(trunk_id))
        await self._write(revoked)
        await self._record("trunk.credential.revoke", revoked, None)
        return revoked

    def _issue(
        self, workspace_id: str, trunk_id: str, rotated_from: str | None
    ) -> IssuedCredential:
        realm = self._settings.ingest.realm
        username = f"{trunk_id}-{secrets.token_hex(4)}"
        password = generate_password()
        cred = TrunkCredential(
            trunk_id=trunk_id,
            workspace_id=workspace_id,
            username=username,
            realm=realm,
            ha1_md5=ha1(username, realm, password, "MD5"),
            ha1_sha256=ha1(username, realm, password, "SHA-256"),
            rotated_from=rotated_from,
        )
        return IssuedCredential(cred, password)

    @staticmethod
    def _revoked(cred: TrunkCredential) -> TrunkCredential:
        return replace(
            cred, status="REVOKED", version=cred.version + 1, updated_at=datetime.now(UTC)
        )

    async def _write(self, cred: TrunkCredential) -> None:
        await self._put(cred.username, cred.to_record())

    async def _record(
        self, action: str, cred: TrunkCredential, region: str | None, **details: str
    ) -> None:
        await AuditLog(self._settings, self.producer).record(
            audit_event(
                action,
                actor_kind="USER",
                actor_id=self._actor,
                workspace_id=cred.workspace_id,
                region=region,
                target=f"trunk:{cred.trunk_id}",
                details={"username": cred.username, **details},
            )
        )
