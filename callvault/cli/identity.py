"""``callvault user | token | role``: users, API tokens and custom roles (control.identities).

Every command acts as the user whose token the CLI holds (see :mod:`callvault.cli.auth`); the
only thing possible without a token is ``user create --bootstrap`` of an empty workspace's first
owner. Tokens are printed once and stored only as digests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

import click

from callvault.cli.asyncrun import run
from callvault.cli.auth import TOKEN_ENV, acting_principal
from callvault.cli.main import get_settings
from callvault.cli.output import emit_json, emit_table, json_option
from callvault.control.identity import (
    DEFAULT_TOKEN_DAYS,
    MAX_TOKEN_DAYS,
    ApiToken,
    IdentityDirectory,
    IssuedToken,
    RoleDefinition,
    User,
    builtin_roles_json,
    memberships_text,
)
from callvault.control.rbac import Permission, Principal, check
from callvault.errors import AuthenticationFailed, PermissionDenied

T = TypeVar("T")

_days = click.option(
    "--days",
    "days",
    type=click.IntRange(0, MAX_TOKEN_DAYS),
    default=DEFAULT_TOKEN_DAYS,
    show_default=True,
    help="Token lifetime in days (0: no expiry).",
)


def _with_directory(
    ctx: click.Context,
    body: Callable[[IdentityDirectory, Principal | None], Awaitable[T]],
    *,
    need_principal: bool = True,
) -> T:
    settings = get_settings(ctx)

    async def go() -> T:
        async with IdentityDirectory(settings) as d:
            principal = await acting_principal(d, settings)
            if principal is None and need_principal:
                raise AuthenticationFailed(
                    f"not logged in: run 'callvault login' or set {TOKEN_ENV}"
                )
            return await body(d, principal)

    return run(go())


def _need(principal: Principal | None) -> Principal:
    assert principal is not None  # _with_directory(need_principal=True) guarantees it
    return principal


def _show_token(issued: IssuedToken, as_json: bool, user: User | None = None) -> None:
    if as_json:
        emit_json({**issued.to_json(), **({"user": user.to_json()} if user else {})})
        return
    if user is not None:
        click.echo(f"user       {user.user_id} ({memberships_text(user.memberships)})")
    t = issued.token
    click.echo(f"token id   {t.token_id}")
    click.echo(f"expires    {t.expires_at.isoformat() if t.expires_at else 'never'}")
    click.echo(f"token      {issued.secret}")
    click.secho(
        "The token is shown once and stored only as a digest; hand it over now "
        "('callvault login --token ...' or CALLVAULT_TOKEN).",
        fg="yellow",
        err=True,
    )


def _show_users(users: list[User], as_json: bool) -> None:
    if as_json:
        emit_json([u.to_json() for u in users])
        return
    emit_table(
        None,
        ("user", "name", "email", "status", "workspaces"),
        [(u.user_id, u.name, u.email, u.status, memberships_text(u.memberships)) for u in users],
    )


# ----------------------------------------------------------------------------- user


@click.group()
def user() -> None:
    """Users and their workspace roles (invitations, grants, disabling)."""


@user.command("create")
@click.argument("user_id")
@click.option("--workspace", "workspace_id", required=True, help="Workspace to add the user to.")
@click.option("--role", required=True, help="Built-in (owner, admin, member, analyst, auditor) or "
              "a custom role of the workspace.")  # fmt: skip
@click.option("--name", help="Display name.")
@click.option("--email", help="Contact e-mail address.")
@click.option(
    "--bootstrap",
    is_flag=True,
    help="Create the first owner of a workspace that has no members yet (no token needed).",
)
@_days
@json_option
@click.pass_context
def user_create(
    ctx: click.Context,
    user_id: str,
    workspace_id: str,
    role: str,
    name: str | None,
    email: str | None,
    bootstrap: bool,
    days: int,
    as_json: bool,
) -> None:
    """Invite USER_ID into a workspace and issue their first API token (shown once).

    Needs users.invite in the workspace, and every permission of the role granted (only owners
    grant owner).
    """

    async def body(d: IdentityDirectory, p: Principal | None) -> tuple[User, IssuedToken]:
        return await d.create_user(
            p, user_id, workspace_id=workspace_id, role=role, name=name, email=email,
            bootstrap=bootstrap, token_days=days,
        )  # fmt: skip

    created, issued = _with_directory(ctx, body, need_principal=not bootstrap)
    _show_token(issued, as_json, created)


@user.command("list")
@click.option("--workspace", "workspace_id", help="Only members of this workspace.")
@json_option
@click.pass_context
def user_list(ctx: click.Context, workspace_id: str | None, as_json: bool) -> None:
    """List the users who share a workspace with you (only those workspaces are shown)."""

    async def body(d: IdentityDirectory, p: Principal | None) -> list[User]:
        me = _need(p)
        if workspace_id is not None and workspace_id not in me.memberships:
            raise PermissionDenied(
                f"user {me.user_id!r} is not a member of workspace {workspace_id!r}"
            )
        visible = {workspace_id} if workspace_id else set(me.memberships)
        out = []
        for u in d.users():
            shared = {w: r for w, r in u.memberships.items() if w in visible}
            if shared:
                out.append(replace(u, memberships=shared))
        return out

    _show_users(_with_directory(ctx, body), as_json)


@user.command("grant")
@click.argument("user_id")
@click.option("--workspace", "workspace_id", required=True)
@click.option("--role", required=True)
@json_option
@click.pass_context
def user_grant(
    ctx: click.Context, user_id: str, workspace_id: str, role: str, as_json: bool
) -> None:
    """Give USER_ID a role in a workspace (replacing the one they had there)."""

    async def body(d: IdentityDirectory, p: Principal | None) -> User:
        return await d.grant(_need(p), user_id, workspace_id, role)

    _show_users([_with_directory(ctx, body)], as_json)


@user.command("revoke-role")
@click.argument("user_id")
@click.option("--workspace", "workspace_id", required=True)
@json_option
@click.pass_context
def user_revoke_role(ctx: click.Context, user_id: str, workspace_id: str, as_json: bool) -> None:
    """Remove USER_ID from a workspace (the last owner cannot be removed)."""

    async def body(d: IdentityDirectory, p: Principal | None) -> User:
        return await d.revoke_role(_need(p), user_id, workspace_id)

    _show_users([_with_directory(ctx, body)], as_json)


@user.command("disable")
@click.argument("user_id")
@json_option
@click.pass_context
def user_disable(ctx: click.Context, user_id: str, as_json: bool) -> None:
    """Disable USER_ID everywhere: every token of theirs stops working at once."""

    async def body(d: IdentityDirectory, p: Principal | None) -> User:
        return await d.disable_user(_need(p), user_id)

    _show_users([_with_directory(ctx, body)], as_json)


# ----------------------------------------------------------------------------- token


@click.group()
def token() -> None:
    """API tokens: shown once, stored as SHA-256 digests, revocable."""


@token.command("create")
@click.option("--label", help="What the token is for (e.g. 'laptop', 'ci').")
@_days
@json_option
@click.pass_context
def token_create(ctx: click.Context, label: str | None, days: int, as_json: bool) -> None:
    """Issue another token for yourself (tokens act in all of your workspaces)."""

    async def body(d: IdentityDirectory, p: Principal | None) -> IssuedToken:
        return await d.create_token(_need(p), label=label, days=days)

    _show_token(_with_directory(ctx, body), as_json)


@token.command("list")
@click.option("--user", "user_id", help="Another user's tokens (needs users.invite over them).")
@json_option
@click.pass_context
def token_list(ctx: click.Context, user_id: str | None, as_json: bool) -> None:
    """List your tokens (never their secrets)."""

    async def body(d: IdentityDirectory, p: Principal | None) -> list[ApiToken]:
        me = _need(p)
        target = user_id or me.user_id
        if target != me.user_id:
            shared = [w for w in d.user(target).memberships if w in me.memberships]
            if not any(me.can(w, Permission.USERS_INVITE) for w in shared):
                # raise the precise message of the first shared workspace (or a generic one)
                for w in shared:
                    check(me, w, Permission.USERS_INVITE)
                raise PermissionDenied(
                    f"user {me.user_id!r} shares no workspace with user {target!r}"
                )
        return d.tokens(target)

    tokens = _with_directory(ctx, body)
    if as_json:
        emit_json([t.to_json() for t in tokens])
        return
    rows = []
    for t in tokens:
        j = t.to_json()
        rows.append((t.token_id, t.user_id, t.label, j["status"], j["expires_at"] or "never"))
    emit_table(None, ("token", "user", "label", "status", "expires"), rows)


@token.command("revoke")
@click.argument("token_id")
@json_option
@click.pass_context
def token_revoke(ctx: click.Context, token_id: str, as_json: bool) -> None:
    """Revoke TOKEN_ID: refused from the next command on (yours, or a user you manage)."""

    async def body(d: IdentityDirectory, p: Principal | None) -> ApiToken:
        return await d.revoke_token(_need(p), token_id)

    revoked = _with_directory(ctx, body)
    if as_json:
        emit_json(revoked.to_json())
    else:
        click.echo(f"revoked token {revoked.token_id} of {revoked.user_id}")


# ----------------------------------------------------------------------------- role


@click.group()
def role() -> None:
    """Roles: built-in (owner, admin, member, analyst, auditor) and per-workspace custom ones."""


@role.command("create")
@click.argument("name")
@click.option("--workspace", "workspace_id", required=True)
@click.option(
    "--permission",
    "permissions",
    multiple=True,
    required=True,
    type=click.Choice(sorted(p.value for p in Permission)),
    help="A permission the role grants; repeatable.",
)
@json_option
@click.pass_context
def role_create(
    ctx: click.Context,
    name: str,
    workspace_id: str,
    permissions: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create custom role NAME in a workspace (you must hold every permission it grants)."""

    async def body(d: IdentityDirectory, p: Principal | None) -> RoleDefinition:
        return await d.create_role(_need(p), workspace_id, name, list(permissions))

    created = _with_directory(ctx, body)
    if as_json:
        emit_json(created.to_json())
    else:
        click.echo(
            f"role {created.name} in {created.workspace_id}: {', '.join(created.permissions)}"
        )


@role.command("list")
@click.option("--workspace", "workspace_id", help="Also list this workspace's custom roles.")
@json_option
@click.pass_context
def role_list(ctx: click.Context, workspace_id: str | None, as_json: bool) -> None:
    """List the built-in roles, and a workspace's custom roles (members only)."""
    roles = builtin_roles_json()
    if workspace_id is not None:

        async def body(d: IdentityDirectory, p: Principal | None) -> list[RoleDefinition]:
            me = _need(p)
            if workspace_id not in me.memberships:
                raise PermissionDenied(
                    f"user {me.user_id!r} is not a member of workspace {workspace_id!r}"
                )
            return d.roles(workspace_id)

        roles += [r.to_json() for r in _with_directory(ctx, body)]
    if as_json:
        emit_json(roles)
        return
    emit_table(
        None,
        ("role", "workspace", "permissions"),
        [
            (r["name"], r["workspace_id"] or "(built-in)", ", ".join(r["permissions"]))
            for r in roles
        ],
    )
