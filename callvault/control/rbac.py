"""Role-based access control: permissions, built-in and custom roles, and the one check.

Pure (no I/O): :mod:`callvault.control.identity` stores users, memberships and custom roles and
builds :class:`Principal` objects; everything that gates an action calls :func:`check`.

A principal holds at most one role per workspace (``memberships``: workspace id -> role name).
A role grants its permissions *in that workspace only*: owner of ``acme`` is nobody in ``globex``.

Built-in roles (the table the README repeats):

============  ===============================================================================
owner         every permission
admin         every permission except ``workspace.manage`` (retention, deletion and ownership
              of the workspace itself stay with its owners; so does granting ``owner``)
member        ``recordings.view``, ``transcripts.view``, ``calls.query``, ``agents.manage``
              (day-to-day work with calls and the AI agents; no downloads, telephony, billing)
analyst       ``calls.query``, ``recordings.view``, ``transcripts.view``, ``billing.view``
              (read-only analysis, including cost; cannot change anything)
auditor       ``audit.read``, ``calls.query`` (checks the trail against call *metadata*; sees no
              recording or transcript content: auditors verify the process, not conversations)
============  ===============================================================================

``recordings.download`` (a copy leaves the platform's controls) is owner/admin only by default;
a custom role may include it, but only someone who holds it can create or grant such a role
(:func:`may_grant`: nobody hands out a permission they do not have).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from callvault.errors import ControlError, PermissionDenied


class Permission(StrEnum):
    RECORDINGS_VIEW = "recordings.view"
    TRANSCRIPTS_VIEW = "transcripts.view"
    RECORDINGS_DOWNLOAD = "recordings.download"
    CALLS_QUERY = "calls.query"
    TRUNKS_MANAGE = "trunks.manage"
    EXTENSIONS_MANAGE = "extensions.manage"
    AGENTS_MANAGE = "agents.manage"
    BILLING_VIEW = "billing.view"
    USERS_INVITE = "users.invite"
    AUDIT_READ = "audit.read"
    TOPICS_REPLAY = "topics.replay"
    TOPICS_DECRYPT = "topics.decrypt"
    ERASURE_EXECUTE = "erasure.execute"
    EXPORT_EXECUTE = "export.execute"
    WORKSPACE_MANAGE = "workspace.manage"


ALL_PERMISSIONS: frozenset[Permission] = frozenset(Permission)

P = Permission
BUILTIN_ROLES: dict[str, frozenset[Permission]] = {
    "owner": ALL_PERMISSIONS,
    "admin": ALL_PERMISSIONS - {P.WORKSPACE_MANAGE},
    "member": frozenset({P.RECORDINGS_VIEW, P.TRANSCRIPTS_VIEW, P.CALLS_QUERY, P.AGENTS_MANAGE}),
    "analyst": frozenset({P.CALLS_QUERY, P.RECORDINGS_VIEW, P.TRANSCRIPTS_VIEW, P.BILLING_VIEW}),
    "auditor": frozenset({P.AUDIT_READ, P.CALLS_QUERY}),
}
OWNER = "owner"

_ROLE_NAME = re.compile(r"^[a-z][a-z0-9_-]{1,39}$")


def parse_permission(value: str) -> Permission:
    try:
        return Permission(value)
    except ValueError:
        known = ", ".join(sorted(p.value for p in Permission))
        raise ControlError(f"unknown permission {value!r}; known: {known}") from None


@dataclass(frozen=True)
class Role:
    name: str
    permissions: frozenset[Permission]
    workspace_id: str | None = None  # None: built-in, valid in every workspace

    @property
    def builtin(self) -> bool:
        return self.workspace_id is None


def builtin_role(name: str) -> Role | None:
    perms = BUILTIN_ROLES.get(name)
    return None if perms is None else Role(name, perms)


def custom_role(workspace_id: str, name: str, permissions: Iterable[str]) -> Role:
    """Validate a custom role: a fresh name and a non-empty set of known permissions."""
    if not _ROLE_NAME.match(name):
        raise ControlError(
            f"role name {name!r} must be 2-40 lowercase letters, digits, '-' or '_', "
            "starting with a letter"
        )
    if name in BUILTIN_ROLES:
        raise ControlError(f"{name!r} is a built-in role; choose another name")
    perms = frozenset(parse_permission(p) for p in permissions)
    if not perms:
        raise ControlError(f"role {name!r} needs at least one permission")
    return Role(name, perms, workspace_id)


@dataclass(frozen=True)
class Principal:
    """Who is acting: a user, the workspaces they belong to, and the custom roles of those."""

    user_id: str
    memberships: Mapping[str, str] = field(default_factory=dict)
    #: custom roles, keyed by (workspace_id, role name)
    custom_roles: Mapping[tuple[str, str], Role] = field(default_factory=dict)
    token_id: str | None = None

    def role_in(self, workspace_id: str) -> Role | None:
        name = self.memberships.get(workspace_id)
        if name is None:
            return None
        return resolve_role(workspace_id, name, self.custom_roles)

    def permissions_in(self, workspace_id: str) -> frozenset[Permission]:
        role = self.role_in(workspace_id)
        return role.permissions if role is not None else frozenset()

    def can(self, workspace_id: str, permission: Permission | str) -> bool:
        return parse_permission(str(permission)) in self.permissions_in(workspace_id)


def resolve_role(
    workspace_id: str, name: str, custom_roles: Mapping[tuple[str, str], Role]
) -> Role | None:
    """A built-in role, else the workspace's custom role of that name (None if neither exists:
    a membership naming a role that was never created grants nothing)."""
    return builtin_role(name) or custom_roles.get((workspace_id, name))


def check(principal: Principal, workspace_id: str, permission: Permission | str) -> None:
    """Return if ``principal`` holds ``permission`` in ``workspace_id``; else PermissionDenied."""
    perm = parse_permission(str(permission))
    role_name = principal.memberships.get(workspace_id)
    if role_name is None:
        raise PermissionDenied(
            f"user {principal.user_id!r} is not a member of workspace {workspace_id!r} "
            f"(needs {perm.value})"
        )
    if perm not in principal.permissions_in(workspace_id):
        raise PermissionDenied(
            f"user {principal.user_id!r} (role {role_name!r}) lacks {perm.value} "
            f"in workspace {workspace_id!r}"
        )


def may_grant(principal: Principal, workspace_id: str, role: Role) -> None:
    """Granting (or creating) ``role`` in a workspace: ``users.invite`` there, ``owner`` only by an
    owner, and no permission the granter does not hold (no escalation through roles)."""
    check(principal, workspace_id, Permission.USERS_INVITE)
    if role.name == OWNER and principal.memberships.get(workspace_id) != OWNER:
        raise PermissionDenied(
            f"user {principal.user_id!r} is not an owner of workspace {workspace_id!r}; "
            "only owners may grant owner"
        )
    missing = role.permissions - principal.permissions_in(workspace_id)
    if missing:
        raise PermissionDenied(
            f"user {principal.user_id!r} cannot grant role {role.name!r} in workspace "
            f"{workspace_id!r}: it includes {', '.join(sorted(missing))}, which they lack"
        )
