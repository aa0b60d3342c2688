"""``callvault extension``: which AI agent a number dialled into a workspace reaches.

The agent a call is attributed to decides whether it is recorded (per-agent recording) and
which ``agent:`` suppression rules apply, so pointing an extension elsewhere is a governed
change: with an API token add, set and remove need ``extensions.manage`` in the workspace
(owner and admin by default) and list needs membership; without one the CLI is the local
operator (see :mod:`callvault.cli.auth`). Every change is audited by
:class:`~callvault.control.extensions.ExtensionDirectory`; refusals are audited DENIED.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import click

from callvault.cli.asyncrun import run
from callvault.cli.auth import actor_id, authorize, require_member
from callvault.cli.main import get_settings
from callvault.cli.output import emit_json, emit_table, json_option
from callvault.control.extensions import Extension, ExtensionDirectory
from callvault.control.rbac import Permission
from callvault.settings import Settings

_workspace_option = click.option(
    "--workspace", "workspace_id", required=True, help="Workspace the extension is dialled into."
)
_agent_help = "AI agent calls to the extension reach (its recording policy then applies)."
_label_help = "Free-text description for people, e.g. 'front desk'."


async def _change(
    settings: Settings,
    workspace_id: str,
    action: str,
    change: Callable[[ExtensionDirectory], Awaitable[Extension]],
) -> Extension:
    """Check ``extensions.manage`` (token holders), then make the change as the acting user."""
    principal = await authorize(settings, workspace_id, Permission.EXTENSIONS_MANAGE, action=action)
    async with ExtensionDirectory(settings, actor=actor_id(principal)) as d:
        return await change(d)


def _show(ext: Extension, verb: str, as_json: bool) -> None:
    if as_json:
        emit_json(ext.to_json())
        return
    label = f" ({ext.label})" if ext.label else ""
    click.echo(
        f"{verb} extension {ext.extension}{label} -> agent {ext.agent_id} "
        f"in workspace {ext.workspace_id} (version {ext.version})"
    )


@click.group()
def extension() -> None:
    """Extensions: the number or SIP user part dialled into a workspace, and the AI agent it
    routes the call to. The agent decides per-agent recording and suppression, so every change
    needs extensions.manage and is audited; ingest nodes apply it within milliseconds."""


@extension.command()
@click.argument("ext")
@_workspace_option
@click.option("--agent", "agent_id", required=True, help=_agent_help)
@click.option("--label", help=_label_help)
@json_option
@click.pass_context
def add(
    ctx: click.Context,
    ext: str,
    workspace_id: str,
    agent_id: str,
    label: str | None,
    as_json: bool,
) -> None:
    """Route calls to EXT (e.g. 201 or +442071838750) to an agent; refused if EXT exists."""
    added = run(
        _change(
            get_settings(ctx),
            workspace_id,
            "extension.add",
            lambda d: d.add(workspace_id, ext, agent_id=agent_id, label=label),
        )
    )
    _show(added, "added", as_json)


@extension.command("set")
@click.argument("ext")
@_workspace_option
@click.option("--agent", "agent_id", help=_agent_help)
@click.option("--label", help=_label_help + " An empty string clears it.")
@json_option
@click.pass_context
def set_(
    ctx: click.Context,
    ext: str,
    workspace_id: str,
    agent_id: str | None,
    label: str | None,
    as_json: bool,
) -> None:
    """Point an existing EXT at another agent or relabel it; calls from then on follow it."""
    if agent_id is None and label is None:
        raise click.UsageError("nothing to change: give --agent and/or --label")
    updated = run(
        _change(
            get_settings(ctx),
            workspace_id,
            "extension.update",
            lambda d: d.update(workspace_id, ext, agent_id=agent_id, label=label),
        )
    )
    _show(updated, "updated", as_json)


@extension.command()
@click.argument("ext")
@_workspace_option
@json_option
@click.pass_context
def remove(ctx: click.Context, ext: str, workspace_id: str, as_json: bool) -> None:
    """Delete EXT; calls to it then fall back to the dialled user part as the agent id."""
    removed = run(
        _change(
            get_settings(ctx),
            workspace_id,
            "extension.remove",
            lambda d: d.remove(workspace_id, ext),
        )
    )
    _show(removed, "removed", as_json)


@extension.command("list")
@_workspace_option
@json_option
@click.pass_context
def list_(ctx: click.Context, workspace_id: str, as_json: bool) -> None:
    """List a workspace's extensions and their agents (a token holder: a member of it)."""
    settings = get_settings(ctx)

    async def go() -> list[Extension]:
        await require_member(settings, workspace_id)
        async with ExtensionDirectory(settings) as d:
            return d.list(workspace_id)

    extensions = run(go())
    if as_json:
        emit_json([e.to_json() for e in extensions])
        return
    emit_table(
        None,
        ("extension", "agent", "label", "version", "updated", "by"),
        [
            (e.extension, e.agent_id, e.label, e.version, e.updated_at.isoformat(), e.updated_by)
            for e in extensions
        ],
    )
