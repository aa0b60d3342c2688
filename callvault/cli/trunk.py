"""``callvault trunk``: SIP trunk credentials (issue, rotate, revoke, list)."""

from __future__ import annotations

import click

from callvault.cli.asyncrun import run
from callvault.cli.main import get_settings
from callvault.cli.output import emit_json, emit_table, json_option
from callvault.control.trunks import IssuedCredential, TrunkCredential, TrunkDirectory


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
        async with TrunkDirectory(settings) as d:
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
        async with TrunkDirectory(settings) as d:
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
        async with TrunkDirectory(settings) as d:
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
