"""``callvault login | logout | whoami`` and how every command finds the acting user.

The CLI acts as the user whose API token it holds: ``$CALLVAULT_TOKEN`` if set, else the token
``callvault login`` stored in ``<home>/credentials`` (0600; a file readable by others is refused,
as ssh refuses such a key). With neither, the CLI is the local operator (``cli:<os user>``):
commands that predate identities (workspaces, trunks, keys) keep working for them, and the
identity commands allow only the ``--bootstrap`` of an empty workspace's first owner.

:func:`require` is the one gate commands call: with a token present it authenticates it and
checks the permission (refusals are audited DENIED); without one it returns ``None``.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import click

from callvault.audit import cli_actor
from callvault.cli.asyncrun import run
from callvault.cli.main import get_settings
from callvault.cli.output import emit_json, json_option
from callvault.control.identity import IdentityDirectory, parse_token, token_matches
from callvault.control.rbac import Permission, Principal
from callvault.errors import AuthenticationFailed, PermissionDenied
from callvault.files import replace_private
from callvault.settings import Settings

TOKEN_ENV = "CALLVAULT_TOKEN"  # noqa: S105 (a variable name, not a secret)


def credentials_file(settings: Settings) -> Path:
    return settings.home / "credentials"


def presented_token(settings: Settings) -> tuple[str, str] | None:
    """(token, where it came from), or None when the CLI holds no token."""
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        return env, TOKEN_ENV
    path = credentials_file(settings)
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise AuthenticationFailed(
            f"{path} is readable by other users (mode {stat.S_IMODE(st.st_mode):o}); "
            "run 'chmod 600' on it or log in again"
        )
    try:
        token = json.loads(path.read_text())["token"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AuthenticationFailed(f"{path} is not a credentials file: {exc}") from None
    return str(token), str(path)


async def acting_principal(d: IdentityDirectory, settings: Settings) -> Principal | None:
    found = presented_token(settings)
    return None if found is None else await d.authenticate(found[0])


async def authorize(
    settings: Settings, workspace_id: str, permission: Permission | str, *, action: str
) -> Principal | None:
    """The acting principal after checking ``permission`` in ``workspace_id`` (refusals audited
    DENIED under ``action``); ``None`` when the CLI holds no token (the local operator)."""
    if presented_token(settings) is None:
        return None
    async with IdentityDirectory(settings) as d:
        principal = await acting_principal(d, settings)
        assert principal is not None
        await d.authorize(principal, workspace_id, permission, action)
        return principal


def require(
    ctx: click.Context, workspace_id: str, permission: Permission | str, *, action: str
) -> Principal | None:
    """:func:`authorize` for a click command."""
    return run(authorize(get_settings(ctx), workspace_id, permission, action=action))


async def acting(settings: Settings) -> Principal | None:
    """The authenticated principal, without a permission check (None: the local operator)."""
    if presented_token(settings) is None:
        return None
    async with IdentityDirectory(settings) as d:
        return await acting_principal(d, settings)


def actor_id(principal: Principal | None) -> str:
    return principal.user_id if principal is not None else cli_actor()


async def require_member(settings: Settings, workspace_id: str) -> Principal | None:
    """For reads any member may do (a policy, the extensions): a token holder must belong to
    the workspace; None for the local operator."""
    principal = await acting(settings)
    if principal is not None and principal.role_in(workspace_id) is None:
        raise PermissionDenied(
            f"user {principal.user_id!r} is not a member of workspace {workspace_id!r}"
        )
    return principal


def operator_only(ctx: click.Context, command: str) -> None:
    """Platform commands (creating workspaces, master keys) belong to the deployment's
    operator, who acts without a token: every token holder is a user of some workspaces, and
    no workspace role reaches beyond its workspace."""
    if presented_token(get_settings(ctx)) is not None:
        raise PermissionDenied(
            f"'{command}' is a platform operator command and no workspace role grants it; run "
            f"it as the operator, without a token (unset {TOKEN_ENV}, 'callvault logout')"
        )


async def authorize_anywhere(
    settings: Settings, permission: Permission, *, action: str
) -> Principal | None:
    """For commands over data of many workspaces (a region's audit chain): the permission in
    at least one workspace; the caller then shows only those workspaces' part."""
    if presented_token(settings) is None:
        return None
    async with IdentityDirectory(settings) as d:
        principal = await acting_principal(d, settings)
        assert principal is not None
        held = [w for w in principal.memberships if principal.can(w, permission)]
        # audited like any refusal: the check runs against a workspace the user belongs to
        first = held[0] if held else next(iter(sorted(principal.memberships)), "-")
        await d.authorize(principal, first, permission, action)
        return principal


@click.command()
@click.option(
    "--token",
    help="The API token (cvt_...); when omitted, prompted for (hidden) or read from a pipe.",
)
@json_option
@click.pass_context
def login(ctx: click.Context, token: str | None, as_json: bool) -> None:
    """Verify an API token and store it in <home>/credentials (0600); audited as auth.login."""
    settings = get_settings(ctx)
    if token is None:
        # prompted (hidden) on a terminal; read as one line from a pipe: never in argv or history
        if sys.stdin.isatty():
            token = click.prompt("API token", hide_input=True)
        else:
            token = sys.stdin.readline()
    token = token.strip()

    async def go() -> Principal:
        async with IdentityDirectory(settings) as d:
            principal = await d.authenticate(token, action="auth.login")
            path = credentials_file(settings)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            replace_private(path, json.dumps({"token": token}).encode())
            await d.record_login(principal)
            return principal

    principal = run(go())
    if as_json:
        emit_json({"user_id": principal.user_id, "token_id": principal.token_id})
    else:
        click.echo(f"logged in as {principal.user_id} (token {principal.token_id})")


@click.command()
@click.pass_context
def logout(ctx: click.Context) -> None:
    """Forget the stored token (it stays valid: 'callvault token revoke' ends it); audited."""
    settings = get_settings(ctx)
    path = credentials_file(settings)
    if not path.exists():
        click.echo("not logged in")
        return
    try:
        token = str(json.loads(path.read_text()).get("token", ""))
    except (OSError, ValueError, AttributeError):
        token = ""  # a damaged file is still removed

    async def go() -> str:
        async with IdentityDirectory(settings) as d:
            token_id: str | None = None
            actor, verified = "unknown", False
            try:
                token_id = parse_token(token)
                record = d.token(token_id)
                actor = record.user_id if record is not None else f"token:{token_id}"
                verified = record is not None and token_matches(token, record.secret_digest)
            except AuthenticationFailed:
                pass
            path.unlink(missing_ok=True)
            await d.record_logout(actor, token_id, verified=verified)
            return actor

    actor = run(go())
    click.echo(f"logged out ({actor}); {path} removed")


@click.command()
@json_option
@click.pass_context
def whoami(ctx: click.Context, as_json: bool) -> None:
    """Who the CLI acts as, and the role and permissions it holds in each workspace."""
    settings = get_settings(ctx)
    found = presented_token(settings)
    if found is None:
        raise AuthenticationFailed(
            f"not logged in: run 'callvault login' or set {TOKEN_ENV} "
            "(without a token the CLI acts as the local operator)"
        )

    async def go() -> Principal:
        async with IdentityDirectory(settings) as d:
            return await d.authenticate(found[0])

    principal = run(go())
    workspaces = {
        w: {"role": r, "permissions": sorted(p.value for p in principal.permissions_in(w))}
        for w, r in sorted(principal.memberships.items())
    }
    if as_json:
        emit_json(
            {
                "user_id": principal.user_id,
                "token_id": principal.token_id,
                "token_source": found[1],
                "workspaces": workspaces,
            }
        )
        return
    click.echo(f"user       {principal.user_id}")
    click.echo(f"token      {principal.token_id} (from {found[1]})")
    for w, info in workspaces.items():
        click.echo(f"workspace  {w}: {info['role']} ({', '.join(info['permissions'])})")
