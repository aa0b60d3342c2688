"""``callvault trunk``: SIP trunk credentials (issue, rotate, revoke, list).

With an API token (``callvault login`` or ``$CALLVAULT_TOKEN``) create, rotate and revoke need
``trunks.manage`` in the trunk's workspace and are audited as that user; without one the CLI is
the local operator, as before identities existed (see :mod:`callvault.cli.auth`).
"""

from __future__ import annotations

import click

from callvault.cli.asyncrun import run
from callvault.cli.auth import authorize, presented_token
from callvault.cli.main import get_settings
from callvault.cli.output import emit_json, emit_table, json_option
from callvault.control.rbac import Permission
from callvault.control.trunks import IssuedCredential, TrunkCredential, TrunkDirectory
from callvault.settings import Settings


async def _acting_user(settings: Settings, trunk_id: str, action: str) -> str | None:
    """The token's user after checking trunks.manage in TRUNK_ID's workspace; None without a
    token (the local operator)."""
    if presented_token(settings) is None:
        return None
    async with TrunkDirectory(settings) as d:
        workspace_id = d.active(trunk_id).workspace_id
    principal = await authorize(settings, workspace_id, Permission.TRUNKS_MANAGE, action=action)
    return principal.user_id if principal else None


def _show_issued(issued: IssuedCredential, as_json: bool) -> None:
    if as_json:
        emit_json(issued.to_json())
        return
    c = issued.credential
    click.echo(f"trunk      {c.trunk_id} (workspace {c.workspace_id})")
    click.echo(f"username   {c.username}")
    click.echo(f"realm      {c.realm}")
    click.echo(f"password   {issued.password}")
    click.secho(
        "The password is shown once and stored only as digest material; copy it into the PBX now.",
        fg="yellow",
        err=True,
    )


@click.group()
def trunk() -> None:
    """SIP trunk credentials: 24-character passwords, shown once, audited."""


@trunk.command()
@click.argument("trunk_id")
@click.option("--workspace", "workspace_id", required=True)
@json_option
@click.pass_context
def create(ctx: click.Context, trunk_id: str, workspace_id: str, as_json: bool) -> None:
    """Issue a username and password for TRUNK_ID in a workspace."""
    settings = get_settings(ctx)

    async def go() -> IssuedCredential:
        principal = await authorize(
            settings, workspace_id, Permission.TRUNKS_MANAGE, action="trunk.credential.issue"
        )
        actor = principal.user_id if principal else None
        async with TrunkDirectory(settings, actor=actor) as d:
            return await d.create(workspace_id, trunk_id)

    _show_issued(run(go()), as_json)


@trunk.command()
@click.argument("trunk_id")
@json_option
@click.pass_context
def rotate(ctx: click.Context, trunk_id: str, as_json: bool) -> None:
    """Replace TRUNK_ID's credential; the old one is revoked at once."""
    settings = get_settings(ctx)

    async def go() -> IssuedCredential:
        actor = await _acting_user(settings, trunk_id, "trunk.credential.rotate")
        async with TrunkDirectory(settings, actor=actor) as d:
            return await d.rotate(trunk_id)

    _show_issued(run(go()), as_json)


@trunk.command()
@click.argument("trunk_id")
@json_option
@click.pass_context
def revoke(ctx: click.Context, trunk_id: str, as_json: bool) -> None:
    """Invalidate TRUNK_ID's credential on every ingest node."""
    settings = get_settings(ctx)

    async def go() -> TrunkCredential:
        actor = await _acting_user(settings, trunk_id, "trunk.credential.revoke")
        async with TrunkDirectory(settings, actor=actor) as d:
            return await d.revoke(trunk_id)

    cred = run(go())
    if as_json:
        emit_json(cred.to_json())
    else:
        click.echo(f"revoked {cred.username} (trunk {cred.trunk_id})")


@trunk.command("list")
@click.option("--workspace", "workspace_id")
@json_option
@click.pass_context
def list_(ctx: click.Context, workspace_id: str | None, as_json: bool) -> None:
    """List trunk credentials (never their secrets)."""
    settings = get_settings(ctx)

    async def go() -> list[TrunkCredential]:
        async with TrunkDirectory(settings) as d:
            return d.list(workspace_id)

    creds = run(go())
    if as_json:
        emit_json([c.to_json() for c in creds])
        return
    emit_table(
        None,
        ("trunk", "workspace", "username", "status", "version", "updated"),
        [
            (c.trunk_id, c.workspace_id, c.username, c.status, c.version, c.updated_at.isoformat())
            for c in creds
        ],
    )
