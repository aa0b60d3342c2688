"""``callvault workspace``: create and change workspace policies (region, retention, recording).

Creating a workspace is the platform operator's (no token); changing one needs
``workspace.manage`` there (``agents.manage`` when only per-agent recording changes), and a
token holder sees only the workspaces they belong to. Every change is an audit event.
"""

from __future__ import annotations

from typing import Any

import click

from callvault.cli.asyncrun import run
from callvault.cli.auth import acting, actor_id, authorize, operator_only, require_member
from callvault.cli.main import get_settings
from callvault.cli.output import emit_json, emit_table, json_option
from callvault.control.rbac import Permission
from callvault.control.workspaces import (
    MAX_RETENTION_DAYS,
    MIN_RETENTION_DAYS,
    WorkspaceDirectory,
    WorkspacePolicy,
)

_COLUMNS = ("workspace", "name", "region", "retention_days", "recording_default", "version")


def _show(policies: list[WorkspacePolicy], as_json: bool) -> None:
    if as_json:
        emit_json([p.to_json() for p in policies])
        return
    emit_table(
        None,
        _COLUMNS,
        [
            (p.workspace_id, p.name, p.region, p.retention_days, p.recording_default, p.version)
            for p in policies
        ],
    )


@click.group()
def workspace() -> None:
    """Workspace policies (compacted control.workspaces topic)."""


@workspace.command()
@click.argument("workspace_id")
@click.option("--region", required=True, help="Home region; every copy of its data stays there.")
@click.option("--name", help="Display name (default: the id).")
@click.option(
    "--retention-days",
    type=click.IntRange(MIN_RETENTION_DAYS, MAX_RETENTION_DAYS),
    help="Days call data is kept (default: settings.default_retention_days, 90).",
)
@json_option
@click.pass_context
def create(
    ctx: click.Context,
    workspace_id: str,
    region: str,
    name: str | None,
    retention_days: int | None,
    as_json: bool,
) -> None:
    """Create WORKSPACE_ID with its home region and retention (platform operator only)."""
    operator_only(ctx, "workspace create")
    settings = get_settings(ctx)

    async def go() -> WorkspacePolicy:
        async with WorkspaceDirectory(settings) as d:  # audited workspace.create
            return await d.create(
                workspace_id, name=name, region=region, retention_days=retention_days
            )

    _show([run(go())], as_json)


@workspace.command("set")
@click.argument("workspace_id")
@click.option("--retention-days", type=click.IntRange(MIN_RETENTION_DAYS, MAX_RETENTION_DAYS))
@click.option("--name")
@click.option(
    "--recording/--no-recording",
    "recording_default",
    default=None,
    help="Recording on by default for the workspace's agents.",
)
@click.option(
    "--agent-recording",
    multiple=True,
    metavar="AGENT=on|off",
    help="Per-agent recording override; repeatable.",
)
@click.option(
    "--suppress",
    "suppress",
    multiple=True,
    metavar="RULE",
    help="Add a suppression rule (caller_prefix:+4480, callee_prefix:N, agent:ID, trunk:ID); "
    "matching calls are never recorded. Repeatable.",
)
@click.option("--unsuppress", multiple=True, metavar="RULE", help="Remove a suppression rule.")
@json_option
@click.pass_context
def set_(
    ctx: click.Context,
    workspace_id: str,
    retention_days: int | None,
    name: str | None,
    recording_default: bool | None,
    agent_recording: tuple[str, ...],
    suppress: tuple[str, ...],
    unsuppress: tuple[str, ...],
    as_json: bool,
) -> None:
    """Change WORKSPACE_ID's policy; takes effect for records processed after the change."""
    settings = get_settings(ctx)
    changes: dict[str, Any] = {}
    if retention_days is not None:
        changes["retention_days"] = retention_days
    if name is not None:
        changes["name"] = name
    if recording_default is not None:
        changes["recording_default"] = recording_default
    overrides: dict[str, bool] = {}
    for item in agent_recording:
        agent, sep, state = item.partition("=")
        if not sep or state not in ("on", "off") or not agent:
            raise click.BadParameter(
                f"{item!r} is not AGENT=on|off", param_hint="--agent-recording"
            )
        overrides[agent] = state == "on"
    if not changes and not overrides and not suppress and not unsuppress:
        raise click.UsageError("nothing to change: give at least one option")

    # per-agent recording is agent configuration; everything else is the workspace's policy
    only_agents = overrides and not changes and not suppress and not unsuppress
    permission = Permission.AGENTS_MANAGE if only_agents else Permission.WORKSPACE_MANAGE

    async def go() -> WorkspacePolicy:
        principal = await authorize(settings, workspace_id, permission, action="workspace.update")
        async with WorkspaceDirectory(settings, actor=actor_id(principal)) as d:
            current = d.get(workspace_id)
            if overrides:
                changes["agent_recording"] = {**current.agent_recording, **overrides}
            if suppress or unsuppress:
                rules = [r for r in current.suppression_rules if r not in unsuppress]
                changes["suppression_rules"] = rules + [r for r in suppress if r not in rules]
            return await d.update(workspace_id, **changes)  # audited workspace.update

    _show([run(go())], as_json)


@workspace.command()
@click.argument("workspace_id")
@json_option
@click.pass_context
def get(ctx: click.Context, workspace_id: str, as_json: bool) -> None:
    """Show one workspace's current policy."""
    settings = get_settings(ctx)

    async def go() -> WorkspacePolicy:
        await require_member(settings, workspace_id)
        async with WorkspaceDirectory(settings) as d:
            return d.get(workspace_id)

    _show([run(go())], as_json)


@workspace.command("list")
@json_option
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """List the workspaces (a token holder: those they belong to)."""
    settings = get_settings(ctx)

    async def go() -> list[WorkspacePolicy]:
        principal = await acting(settings)
        async with WorkspaceDirectory(settings) as d:
            return [p for p in d.list()
                    if principal is None or p.workspace_id in principal.memberships]  # fmt: skip

    _show(run(go()), as_json)
