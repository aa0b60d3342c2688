"""Identity: users, API tokens and custom roles on the compacted ``control.identities`` topic.

Records are keyed by kind-prefixed ids — ``user:<user_id>``, ``token:<token_id>``,
``role:<workspace_id>:<name>`` — so one live view answers every question the CLI asks: who does
this token act as, which workspaces and roles does that user hold, what does a custom role grant.

Tokens look like ``cvt_<token_id>_<secret>``: 12 hex digits naming the record, then 32 random
bytes (256 bits, base64url). Only the SHA-256 of the whole token string is stored: with that much
entropy a slow password hash buys nothing, and a leaked topic reveals no usable token. The token
exists once, in the return value of the call that issued it, to be shown to the operator.

Writes are authorized here, not in the CLI (:mod:`callvault.control.rbac` decides): every change
is an audit event with the acting user, and every refusal — a failed authentication, a missing
permission — is an audit event with outcome DENIED before the error is raised.

Bootstrap: the first owner of a workspace is created with ``bootstrap=True`` and no principal,
and only while nobody is a member of that workspace. Two bootstraps racing for the same empty
workspace can both succeed (the view is read, then written); both are audited.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from callvault.audit import AuditLog, Outcome, audit_event, cli_actor
from callvault.control.directory import ControlDirectory
from callvault.control.rbac import (
    BUILTIN_ROLES,
    OWNER,
    Permission,
    Principal,
    Role,
    check,
    custom_role,
    may_grant,
    resolve_role,
)
from callvault.control.view import CompactedView
from callvault.control.workspaces import WorkspacePolicy, workspace_view
from callvault.errors import AuthenticationFailed, ControlError, PermissionDenied
from callvault.kafka_client import kafka_options
from callvault.settings import Settings
from callvault.topics import Topics

TOKEN_PREFIX = "cvt"  # noqa: S105 (a format marker, not a secret)
DEFAULT_TOKEN_DAYS = 90
MAX_TOKEN_DAYS = 365
_TOKEN = re.compile(r"^cvt_(?P<id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")
_USER_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")

UserStatus = Literal["ACTIVE", "DISABLED"]
TokenStatus = Literal["ACTIVE", "REVOKED"]


# ----------------------------------------------------------------------------- tokens (pure)


def generate_token() -> tuple[str, str]:
    """(token_id, token): a fresh token from the OS CSPRNG."""
    token_id = secrets.token_hex(6)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return token_id, f"{TOKEN_PREFIX}_{token_id}_{secret}"


def parse_token(token: str) -> str:
    """The token id of a well-formed token; AuthenticationFailed (never quoting it) otherwise."""
    m = _TOKEN.match(token.strip())
    if m is None:
        raise AuthenticationFailed("malformed API token (expected cvt_<id>_<secret>)")
    return m["id"]


def token_digest(token: str) -> str:
    return hashlib.sha256(token.strip().encode()).hexdigest()


def token_matches(token: str, digest: str) -> bool:
    return hmac.compare_digest(token_digest(token), digest)


# ----------------------------------------------------------------------------- records


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class User:
    user_id: str
    memberships: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    email: str | None = None
    status: UserStatus = "ACTIVE"
    created_by: str = ""
    created_at: datetime = field(default_factory=_now)
    version: int = 1
    updated_at: datetime = field(default_factory=_now)

    @property
    def key(self) -> str:
        return f"user:{self.user_id}"

    @property
    def active(self) -> bool:
        return self.status == "ACTIVE"

    def to_record(self) -> dict[str, Any]:
        return _record(
            self.key, "USER", self.status, self.created_by, self.created_at, self.version,
            self.updated_at, user_id=self.user_id, name=self.name, email=self.email,
            memberships=dict(self.memberships),
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "name": self.name,
            "email": self.email,
            "status": self.status,
            "memberships": dict(self.memberships),
            "created_by": self.created_by,
            "version": self.version,
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class ApiToken:
    token_id: str
    user_id: str
    secret_digest: str
    label: str | None = None
    expires_at: datetime | None = None
    status: TokenStatus = "ACTIVE"
    created_by: str = ""
    created_at: datetime = field(default_factory=_now)
    version: int = 1
    updated_at: datetime = field(default_factory=_now)

    @property
    def key(self) -> str:
        return f"token:{self.token_id}"

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and (now or _now()) >= self.expires_at

    def to_record(self) -> dict[str, Any]:
        return _record(
            self.key, "TOKEN", self.status, self.created_by, self.created_at, self.version,
            self.updated_at, user_id=self.user_id, name=self.label,
            secret_digest=self.secret_digest, expires_at=self.expires_at,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """What operators see: never the digest."""
        return {
            "token_id": self.token_id,
            "user_id": self.user_id,
            "label": self.label,
            "status": "EXPIRED" if self.status == "ACTIVE" and self.expired() else self.status,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class RoleDefinition:
    workspace_id: str
    name: str
    permissions: tuple[str, ...]
    created_by: str = ""
    created_at: datetime = field(default_factory=_now)
    version: int = 1
    updated_at: datetime = field(default_factory=_now)

    @property
    def key(self) -> str:
        return f"role:{self.workspace_id}:{self.name}"

    def role(self) -> Role:
        return custom_role(self.workspace_id, self.name, self.permissions)

    def to_record(self) -> dict[str, Any]:
        return _record(
            self.key, "ROLE", "ACTIVE", self.created_by, self.created_at, self.version,
            self.updated_at, workspace_id=self.workspace_id, name=self.name,
            permissions=sorted(self.permissions),
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "workspace_id": self.workspace_id,
            "name": self.name,
            "builtin": False,
            "permissions": sorted(self.permissions),
            "created_by": self.created_by,
        }


Identity = User | ApiToken | RoleDefinition


def _record(
    key: str,
    kind: str,
    status: str,
    created_by: str,
    created_at: datetime,
    version: int,
    updated_at: datetime,
    **fields: Any,
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": key,
        "kind": kind,
        "status": status,
        "user_id": None,
        "workspace_id": None,
        "name": None,
        "email": None,
        "memberships": {},
        "permissions": [],
        "secret_digest": None,
        "expires_at": None,
        "created_by": created_by,
        "created_at": created_at,
        "version": version,
        "updated_at": updated_at,
    }
    rec.update(fields)
    return rec


def identity_from_record(rec: dict[str, Any]) -> Identity:
    common = {
        "created_by": rec["created_by"],
        "created_at": rec["created_at"],
        "version": rec["version"],
        "updated_at": rec["updated_at"],
    }
    kind = rec["kind"]
    if kind == "USER":
        return User(
            user_id=rec["user_id"], memberships=dict(rec.get("memberships") or {}),
            name=rec.get("name"), email=rec.get("email"), status=rec["status"], **common,
        )  # fmt: skip
    if kind == "TOKEN":
        return ApiToken(
            token_id=rec["id"].removeprefix("token:"), user_id=rec["user_id"],
            secret_digest=rec["secret_digest"], label=rec.get("name"),
            expires_at=rec.get("expires_at"), status=rec["status"], **common,
        )  # fmt: skip
    return RoleDefinition(
        workspace_id=rec["workspace_id"], name=rec["name"],
        permissions=tuple(rec.get("permissions") or ()), **common,
    )  # fmt: skip


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # the whole token string; shown once

    def to_json(self) -> dict[str, Any]:
        return {**self.token.to_json(), "token": self.secret}


def identity_view(settings: Settings) -> CompactedView[Identity]:
    return CompactedView(
        kafka_options(settings),
        Topics(settings).name("control.identities"),
        "IdentityRecord",
        identity_from_record,
        request_timeout_s=settings.kafka.request_timeout_s,
    )


# ----------------------------------------------------------------------------- the directory


class IdentityDirectory(ControlDirectory[Identity]):
    """Read users, tokens and roles; authenticate tokens; make audited, authorized changes.

    Every write takes the acting :class:`Principal` (``None`` only for a bootstrap) and checks it
    with :mod:`callvault.control.rbac`; refusals are audited as DENIED and then raised.
    """

    schema = "IdentityRecord"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, identity_view(settings))

    # -- reads

    def _all(self) -> list[Identity]:
        return list(self._view.items().values())

    def users(self, workspace_id: str | None = None) -> list[User]:
        return sorted(
            (
                i
                for i in self._all()
                if isinstance(i, User) and (workspace_id is None or workspace_id in i.memberships)
            ),
            key=lambda u: u.user_id,
        )

    def find_user(self, user_id: str) -> User | None:
        found = self._view.get(f"user:{user_id}")
        return found if isinstance(found, User) else None

    def user(self, user_id: str) -> User:
        found = self.find_user(user_id)
        if found is None:
            raise ControlError(f"user {user_id!r} does not exist")
        return found

    def tokens(self, user_id: str) -> list[ApiToken]:
        return sorted(
            (i for i in self._all() if isinstance(i, ApiToken) and i.user_id == user_id),
            key=lambda t: t.created_at,
        )

    def token(self, token_id: str) -> ApiToken | None:
        found = self._view.get(f"token:{token_id}")
        return found if isinstance(found, ApiToken) else None

    def roles(self, workspace_id: str) -> list[RoleDefinition]:
        return sorted(
            (
                i
                for i in self._all()
                if isinstance(i, RoleDefinition) and i.workspace_id == workspace_id
            ),
            key=lambda r: r.name,
        )

    def custom_roles(self) -> dict[tuple[str, str], Role]:
        return {
            (i.workspace_id, i.name): i.role() for i in self._all() if isinstance(i, RoleDefinition)
        }

    def principal(self, user: User, token_id: str | None = None) -> Principal:
        custom = {k: r for k, r in self.custom_roles().items() if k[0] in user.memberships}
        return Principal(user.user_id, dict(user.memberships), custom, token_id)

    def _role(self, workspace_id: str, name: str) -> Role:
        role = resolve_role(workspace_id, name, self.custom_roles())
        if role is None:
            raise ControlError(
                f"role {name!r} is neither built-in nor a custom role of workspace {workspace_id!r}"
            )
        return role

    # -- authentication

    async def authenticate(self, token: str, *, action: str = "auth.token") -> Principal:
        """The principal ``token`` acts as; AuthenticationFailed (audited DENIED) otherwise."""
        token_id: str | None = None
        try:
            token_id = parse_token(token)
            record = self.token(token_id)
            if record is None or not token_matches(token, record.secret_digest):
                raise AuthenticationFailed(f"unknown API token {token_id}")
            if record.status != "ACTIVE":
                raise AuthenticationFailed(f"API token {token_id} has been revoked")
            if record.expired():
                raise AuthenticationFailed(f"API token {token_id} has expired")
            user = self.find_user(record.user_id)
            if user is None or not user.active:
                raise AuthenticationFailed(
                    f"user {record.user_id!r} of API token {token_id} is disabled"
                )
        except AuthenticationFailed as exc:
            known = self.token(token_id) if token_id else None
            await self._audit(
                action,
                known.user_id if known else f"token:{token_id or 'malformed'}",
                outcome="DENIED",
                target=f"token:{token_id}" if token_id else None,
                reason=str(exc),
            )
            raise
        return self.principal(user, token_id)

    async def record_login(self, principal: Principal) -> None:
        await self._audit("auth.login", principal.user_id, target=f"token:{principal.token_id}")

    async def record_logout(self, actor_id: str, token_id: str | None, *, verified: bool) -> None:
        """``verified``: the stored token matched its digest (a revoked or expired token still
        logs out; the event says whether the actor was proven)."""
        await self._audit(
            "auth.logout", actor_id, target=f"token:{token_id}" if token_id else None,
            verified=str(verified).lower(),
        )  # fmt: skip

    async def authorize(
        self, principal: Principal, workspace_id: str, permission: Permission | str, action: str
    ) -> None:
        """:func:`rbac.check`, with a refusal audited as DENIED (``action`` names the attempt)."""
        await self._guard(
            principal.user_id, action, workspace_id, None,
            lambda: check(principal, workspace_id, permission),
        )  # fmt: skip

    # -- writes

    async def create_user(
        self,
        actor: Principal | None,
        user_id: str,
        *,
        workspace_id: str,
        role: str,
        name: str | None = None,
        email: str | None = None,
        bootstrap: bool = False,
        token_days: int = DEFAULT_TOKEN_DAYS,
    ) -> tuple[User, IssuedToken]:
        """Create a user with one membership and issue their first token (shown once)."""
        if not _USER_ID.match(user_id):
            raise ControlError(
                f"user id {user_id!r} must be 2-63 lowercase letters, digits, '.', '-' or '_'"
            )
        policy = await self._workspace(workspace_id)
        granted = self._role(workspace_id, role)
        actor_id = actor.user_id if actor is not None else cli_actor()

        def authorize() -> None:
            if bootstrap:
                if self.users(workspace_id):
                    raise PermissionDenied(
                        f"workspace {workspace_id!r} already has members; bootstrap is only for "
                        "its first owner (ask an owner or admin to invite you)"
                    )
                if role != OWNER:
                    raise PermissionDenied("a bootstrap creates the workspace's first owner")
            elif actor is None:
                raise PermissionDenied(
                    "no API token: log in (callvault login) or set CALLVAULT_TOKEN; without one "
                    "only --bootstrap of an empty workspace is possible"
                )
            else:
                may_grant(actor, workspace_id, granted)

        await self._guard(actor_id, "user.create", workspace_id, f"user:{user_id}", authorize)
        if self.find_user(user_id) is not None:
            raise ControlError(
                f"user {user_id!r} already exists; use 'callvault user grant' to add a workspace"
            )
        user = User(
            user_id=user_id, memberships={workspace_id: role}, name=name, email=email,
            created_by=actor_id,
        )  # fmt: skip
        await self._put(user.key, user.to_record())
        await self._audit(
            "user.create", actor_id, workspace_id=workspace_id, region=policy.region,
            target=f"user:{user_id}", role=role, bootstrap=str(bootstrap).lower(),
        )  # fmt: skip
        issued = await self._issue(actor_id, user_id, "initial", token_days, workspace_id)
        return user, issued

    async def grant(self, actor: Principal, user_id: str, workspace_id: str, role: str) -> User:
        """Give ``user_id`` ``role`` in ``workspace_id`` (replacing any role they had there)."""
        policy = await self._workspace(workspace_id)
        granted = self._role(workspace_id, role)
        user = self.user(user_id)

        def authorize() -> None:
            may_grant(actor, workspace_id, granted)
            self._may_manage(actor, user, workspace_id)

        await self._guard(actor.user_id, "user.grant", workspace_id, f"user:{user_id}", authorize)
        if user.memberships.get(workspace_id) == OWNER and role != OWNER:
            self._not_last_owner(user, workspace_id)
        changed = self._bump(user, memberships={**user.memberships, workspace_id: role})
        await self._put(changed.key, changed.to_record())
        await self._audit(
            "user.grant", actor.user_id, workspace_id=workspace_id, region=policy.region,
            target=f"user:{user_id}", role=role,
            previous_role=user.memberships.get(workspace_id) or "",
        )  # fmt: skip
        return changed

    async def revoke_role(self, actor: Principal, user_id: str, workspace_id: str) -> User:
        """Remove ``user_id`` from ``workspace_id``."""
        user = self.user(user_id)
        if workspace_id not in user.memberships:
            raise ControlError(f"user {user_id!r} is not a member of workspace {workspace_id!r}")

        def authorize() -> None:
            check(actor, workspace_id, Permission.USERS_INVITE)
            self._may_manage(actor, user, workspace_id)

        await self._guard(
            actor.user_id, "user.revoke_role", workspace_id, f"user:{user_id}", authorize
        )
        self._not_last_owner(user, workspace_id)
        memberships = {w: r for w, r in user.memberships.items() if w != workspace_id}
        changed = self._bump(user, memberships=memberships)
        await self._put(changed.key, changed.to_record())
        await self._audit(
            "user.revoke_role", actor.user_id, workspace_id=workspace_id,
            target=f"user:{user_id}", previous_role=user.memberships[workspace_id],
        )  # fmt: skip
        return changed

    async def disable_user(self, actor: Principal, user_id: str) -> User:
        """Disable ``user_id`` everywhere: all their tokens stop authenticating at once. The actor
        must be able to manage the user in *every* workspace the user belongs to."""
        user = self.user(user_id)

        def authorize() -> None:
            for workspace_id in user.memberships:
                check(actor, workspace_id, Permission.USERS_INVITE)
                self._may_manage(actor, user, workspace_id)
            if not user.memberships and actor.user_id != user_id:
                raise PermissionDenied(
                    f"user {user_id!r} belongs to no workspace; only they can disable themselves"
                )

        await self._guard(actor.user_id, "user.disable", None, f"user:{user_id}", authorize)
        for workspace_id in user.memberships:
            self._not_last_owner(user, workspace_id)
        changed = self._bump(user, status="DISABLED")
        await self._put(changed.key, changed.to_record())
        for workspace_id in user.memberships:
            await self._audit(
                "user.disable", actor.user_id, workspace_id=workspace_id, target=f"user:{user_id}"
            )
        if not user.memberships:
            await self._audit("user.disable", actor.user_id, target=f"user:{user_id}")
        return changed

    async def create_token(
        self, actor: Principal, *, label: str | None = None, days: int = DEFAULT_TOKEN_DAYS
    ) -> IssuedToken:
        """A new token for the acting user themself (a token acts in every workspace of its user,
        so nobody else may mint one for them)."""
        return await self._issue(actor.user_id, actor.user_id, label, days, None)

    async def revoke_token(self, actor: Principal, token_id: str) -> ApiToken:
        """Revoke a token: its own user, or anyone who may manage that user in a shared
        workspace (revoking only ever takes access away)."""
        record = self.token(token_id)
        if record is None:
            raise ControlError(f"token {token_id!r} does not exist")
        owner = self.find_user(record.user_id)

        def authorize() -> None:
            if actor.user_id == record.user_id:
                return
            shared = [w for w in (owner.memberships if owner else {}) if w in actor.memberships]
            for workspace_id in shared:
                try:
                    check(actor, workspace_id, Permission.USERS_INVITE)
                    if owner is not None:
                        self._may_manage(actor, owner, workspace_id)
                    return
                except PermissionDenied:
                    continue
            raise PermissionDenied(
                f"user {actor.user_id!r} may not revoke tokens of user {record.user_id!r} "
                "(needs users.invite over them in a shared workspace)"
            )

        await self._guard(actor.user_id, "token.revoke", None, f"token:{token_id}", authorize)
        if record.status == "REVOKED":
            return record
        revoked = replace(record, status="REVOKED", version=record.version + 1, updated_at=_now())
        await self._put(revoked.key, revoked.to_record())
        await self._audit(
            "token.revoke", actor.user_id, target=f"token:{token_id}", user_id=record.user_id
        )
        return revoked

    async def create_role(
        self, actor: Principal, workspace_id: str, name: str, permissions: list[str]
    ) -> RoleDefinition:
        """A custom role of ``workspace_id``; its creator must hold every permission in it."""
        policy = await self._workspace(workspace_id)
        role = custom_role(workspace_id, name, permissions)  # validates
        definition = RoleDefinition(
            workspace_id, name, tuple(sorted(p.value for p in role.permissions)),
            created_by=actor.user_id,
        )  # fmt: skip
        await self._guard(
            actor.user_id, "role.create", workspace_id, f"role:{name}",
            lambda: may_grant(actor, workspace_id, role),
        )  # fmt: skip
        if self._view.get(definition.key) is not None:
            raise ControlError(f"role {name!r} already exists in workspace {workspace_id!r}")
        await self._put(definition.key, definition.to_record())
        await self._audit(
            "role.create", actor.user_id, workspace_id=workspace_id, region=policy.region,
            target=f"role:{name}", permissions=",".join(definition.permissions),
        )  # fmt: skip
        return definition

    # -- helpers

    async def _issue(
        self,
        actor_id: str,
        user_id: str,
        label: str | None,
        days: int,
        workspace_id: str | None,
    ) -> IssuedToken:
        if not 0 <= days <= MAX_TOKEN_DAYS:
            raise ControlError(f"token lifetime must be 0 (no expiry) to {MAX_TOKEN_DAYS} days")
        token_id, secret = generate_token()
        record = ApiToken(
            token_id=token_id, user_id=user_id, secret_digest=token_digest(secret), label=label,
            expires_at=_now() + timedelta(days=days) if days else None, created_by=actor_id,
        )  # fmt: skip
        await self._put(record.key, record.to_record())
        await self._audit(
            "token.create", actor_id, workspace_id=workspace_id, target=f"token:{token_id}",
            user_id=user_id, expires_at=record.expires_at.isoformat() if record.expires_at else "",
        )  # fmt: skip
        return IssuedToken(record, secret)

    def _may_manage(self, actor: Principal, user: User, workspace_id: str) -> None:
        """Nobody changes the standing of someone more privileged than themself."""
        current = user.memberships.get(workspace_id)
        if current is None or actor.user_id == user.user_id:
            return
        role = self._role(workspace_id, current)
        if role.name == OWNER and actor.memberships.get(workspace_id) != OWNER:
            raise PermissionDenied(
                f"user {user.user_id!r} is an owner of workspace {workspace_id!r}; only owners "
                "may change an owner"
            )
        missing = role.permissions - actor.permissions_in(workspace_id)
        if missing:
            raise PermissionDenied(
                f"user {actor.user_id!r} cannot change user {user.user_id!r} (role "
                f"{current!r}) in workspace {workspace_id!r}: that role holds "
                f"{', '.join(sorted(missing))}, which they lack"
            )

    def _not_last_owner(self, user: User, workspace_id: str) -> None:
        if user.memberships.get(workspace_id) != OWNER:
            return
        owners = [
            u
            for u in self.users(workspace_id)
            if u.active and u.memberships.get(workspace_id) == OWNER
        ]
        if [u.user_id for u in owners] == [user.user_id]:
            raise ControlError(
                f"user {user.user_id!r} is the last owner of workspace {workspace_id!r}; "
                "grant owner to someone else first"
            )

    @staticmethod
    def _bump(user: User, **changes: Any) -> User:
        return replace(user, **changes, version=user.version + 1, updated_at=_now())

    async def _workspace(self, workspace_id: str) -> WorkspacePolicy:
        view = workspace_view(self._settings)
        await view.start()
        try:
            policy = view.get(workspace_id)
        finally:
            await view.stop()
        if policy is None or policy.deleted:
            raise ControlError(f"workspace {workspace_id!r} does not exist")
        return policy

    async def _guard(
        self,
        actor_id: str,
        action: str,
        workspace_id: str | None,
        target: str | None,
        decide: Callable[[], None],
    ) -> None:
        try:
            decide()
        except PermissionDenied as exc:
            await self._audit(
                action, actor_id, outcome="DENIED", workspace_id=workspace_id, target=target,
                reason=str(exc),
            )  # fmt: skip
            raise

    async def _audit(
        self,
        action: str,
        actor_id: str,
        *,
        outcome: Outcome = "SUCCESS",
        workspace_id: str | None = None,
        region: str | None = None,
        target: str | None = None,
        **details: str,
    ) -> None:
        await AuditLog(self._settings, self.producer).record(
            audit_event(
                action,
                actor_kind="USER",
                actor_id=actor_id,
                outcome=outcome,
                workspace_id=workspace_id,
                region=region,
                target=target,
                details=details,
            )
        )


def builtin_roles_json() -> list[dict[str, Any]]:
    return [
        {"workspace_id": None, "name": name, "builtin": True,
         "permissions": sorted(p.value for p in perms), "created_by": None}
        for name, perms in BUILTIN_ROLES.items()
    ]  # fmt: skip


def memberships_text(memberships: Mapping[str, str]) -> str:
    return ", ".join(f"{w}:{r}" for w, r in sorted(memberships.items()))
