"""``callvault keys``: list, rotate and shred encryption keys. Key material is never shown."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import click

from callvault.cli.asyncrun import run
from callvault.cli.auth import actor_id, authorize, operator_only, presented_token
from callvault.cli.main import get_settings
from callvault.cli.output import emit_json, json_option
from callvault.control.keys import (
    KafkaKeyStore,
    KeyAdmin,
    MasterRotation,
    ShredResult,
    describe_key,
    open_keys,
    rotation_json,
)
from callvault.control.rbac import Permission
from callvault.crypto.keyring import KeyRecord, WorkspaceRotation
from callvault.errors import ControlError
from callvault.settings import Settings

_SCOPE_ORDER = {"MASTER": 0, "WORKSPACE": 1, "CALL": 2}
_IRREVERSIBLE = (
    "every artifact encrypted under it (recordings, transcripts, summaries; in Kafka history, "
    "S3 and replays) becomes unrecoverable. This cannot be undone."
)
_AFTERMATH = (
    "Running processes drop their cached copies as soon as they read the shred; older wrapped "
    "copies in the control.keys history are compacted away within max.compaction.lag.ms (24 h)."
)


@click.group()
def keys() -> None:
    """Encryption keys: master -> workspace key -> per-call key (topic control.keys).

    Shredding destroys keys, which crypto-shreds the data under them; rotation re-wraps keys
    without re-encrypting data. Every operation is an audit event. The master key comes from
    settings keys.* (CALLVAULT_KEYS__PROVIDER=local|aws-kms, CALLVAULT_KEYS__LOCAL_KEY_FILE,
    CALLVAULT_KEYS__KMS_KEY_ID, CALLVAULT_KEYS__KMS_REGION).
    """


@keys.command("init")
@json_option
@click.pass_context
def init(ctx: click.Context, as_json: bool) -> None:
    """Provision the local master key file (mode 0600) if it does not exist; idempotent.

    The explicit way to create it in production, where processes never create it on their own.
    Refused when control.keys already holds workspace keys wrapped by a master key that is not
    in the file: a lost master key must be restored from backup, not replaced by a new one that
    would silently split the data between two masters.
    """
    from callvault.crypto.providers import LocalKeyFileProvider

    operator_only(ctx, "keys init")

    settings = get_settings(ctx)
    if settings.keys.provider != "local":
        out = {
            "provider": settings.keys.provider,
            "created": False,
            "location": settings.keys.kms_key_id,
        }
        if as_json:
            emit_json(out)
        else:
            click.echo(f"master key lives in KMS: {out['location']}")
        return
    path = settings.master_key_file

    async def wrapping_masters() -> set[str]:
        async with KafkaKeyStore(settings) as store:
            records = await store.records()
        return {
            r["wrapping_key_id"]
            for r in records
            if r["scope"] == "WORKSPACE" and not r["destroyed"]
        }

    in_use = run(wrapping_masters())
    existed = path.exists()
    known = set(LocalKeyFileProvider(path).master_key_ids) if existed else set()
    missing = in_use - known
    if missing:
        names = ", ".join(sorted(missing))
        raise ControlError(
            f"control.keys holds workspace keys wrapped by master key(s) {names} that {path} "
            "does not contain; restore that key file instead of creating a new one"
        )
    provider = LocalKeyFileProvider.create_if_missing(path)
    audit_created, audit_key = _audit_signing_key(settings)
    out = {"provider": "local", "created": not existed, "location": str(path),
           "master_key_id": provider.key_id, **audit_key}  # fmt: skip
    if as_json:
        emit_json(out)
    else:
        click.echo(f"{'created' if not existed else 'present'}: {path} (master {provider.key_id})")
        click.echo(
            f"{'created' if audit_created else 'present'}: {audit_key['audit_signing_key']} "
            f"(audit chain; give auditors {audit_key['audit_public_key']})"
        )


def _audit_signing_key(settings: Settings) -> tuple[bool, dict[str, str]]:
    """The audit chain's Ed25519 key is provisioned here too, in every environment: production
    workers never create it themselves (see callvault/audit_chain.py)."""
    from callvault.audit_chain import create_signing_key_if_missing, public_key_id, signing_key

    created = create_signing_key_if_missing(settings.audit_signing_key_file)
    key = signing_key(settings)  # also writes the public key file beside it
    return created, {
        "audit_signing_key": str(settings.audit_signing_key_file),
        "audit_public_key": str(settings.audit_public_key_file),
        "audit_public_key_id": public_key_id(key.public_key()),
    }


@keys.command("list")
@click.option("--workspace", "workspace_id", help="Only this workspace's keys.")
@json_option
@click.pass_context
def list_(ctx: click.Context, workspace_id: str | None, as_json: bool) -> None:
    """List key records: ids, scope, workspace, call, wrapping key, created, destroyed. With a
    token: --workspace, and audit.read there."""
    settings = get_settings(ctx)

    async def go() -> list[KeyRecord]:
        if workspace_id is not None:
            await authorize(settings, workspace_id, Permission.AUDIT_READ, action="key.list")
        elif presented_token(settings) is not None:
            raise ControlError("--workspace is required when acting with a token")
        async with KafkaKeyStore(settings) as store:
            if workspace_id is not None:
                return await store.by_workspace(workspace_id)
            return await store.records()

    records = sorted(
        run(go()),
        key=lambda r: (
            r["workspace_id"] or "",
            _SCOPE_ORDER.get(r["scope"], 9),
            r["call_id"] or "",
            r["created_at"],
            r["key_id"],
        ),
    )
    rows = [describe_key(r) for r in records]
    if as_json:
        emit_json(rows)
        return
    _emit_keys(rows)


@keys.command("rotate-master")
@click.option(
    "--retire-old",
    is_flag=True,
    help="After re-wrapping, delete the older master versions from the local key file "
    "(refused while a live workspace key is still wrapped under one).",
)
@json_option
@click.pass_context
def rotate_master(ctx: click.Context, retire_old: bool, as_json: bool) -> None:
    """New master key version; re-wrap every live workspace key under it.

    Local key file: a version is added and becomes current; old versions stay (so keys wrapped
    under them still open) until --retire-old. AWS KMS: re-wraps keys under another KMS key to
    keys.kms_key_id; KMS's automatic rotation needs no re-wrap.
    """
    operator_only(ctx, "keys rotate-master")
    settings = get_settings(ctx)

    async def go() -> MasterRotation:
        async with open_keys(settings) as k:
            return await KeyAdmin(settings, k).rotate_master(retire_old=retire_old)

    with _busy("re-wrapping workspace keys under the new master key..."):
        result = run(go())
    if as_json:
        emit_json(result.to_json())
        return
    click.echo(
        f"master key {result.previous_master_key_id} -> {result.master_key_id} "
        f"({result.provider}); re-wrapped {len(result.rewrapped_key_ids)} workspace key(s)"
    )
    for master_id in result.retired_master_key_ids:
        click.echo(f"retired master key {master_id}")


@keys.command("rotate-workspace")
@click.argument("workspace_id")
@json_option
@click.pass_context
def rotate_workspace(ctx: click.Context, workspace_id: str, as_json: bool) -> None:
    """New workspace key for WORKSPACE_ID; call keys re-wrapped, the old key destroyed.

    No data is re-encrypted: call keys keep their bytes and ids, only their wrapping changes.
    Needs workspace.manage.
    """
    settings = get_settings(ctx)

    async def go() -> WorkspaceRotation:
        principal = await authorize(
            settings, workspace_id, Permission.WORKSPACE_MANAGE, action="key.workspace.rotate"
        )
        async with open_keys(settings) as k:
            admin = KeyAdmin(settings, k, actor=actor_id(principal))
            return await admin.rotate_workspace(workspace_id)

    with _busy(f"re-wrapping the call keys of {workspace_id}..."):
        rotation = run(go())
    if as_json:
        emit_json(rotation_json(rotation))
        return
    click.echo(
        f"workspace {workspace_id}: new key {rotation.new_key_id}; destroyed "
        f"{', '.join(rotation.retired_key_ids) or 'none'}; re-wrapped "
        f"{len(rotation.rewrapped_call_key_ids)} call key(s)"
    )


@keys.command("shred-call")
@click.argument("workspace_id")
@click.argument("call_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_context
def shred_call(
    ctx: click.Context, workspace_id: str, call_id: str, yes: bool, as_json: bool
) -> None:
    """Destroy every key of CALL_ID in WORKSPACE_ID: the call's data becomes unrecoverable.
    Needs erasure.execute (prefer 'callvault erase', which also deletes and certifies)."""
    settings = get_settings(ctx)
    if not yes:
        click.confirm(
            f"Shred call {call_id} of workspace {workspace_id}? The call's key is destroyed and "
            + _IRREVERSIBLE,
            abort=True,
            err=True,
        )

    async def go() -> ShredResult:
        principal = await authorize(
            settings, workspace_id, Permission.ERASURE_EXECUTE, action="key.call.shred"
        )
        async with open_keys(settings) as k:
            admin = KeyAdmin(settings, k, actor=actor_id(principal))
            return await admin.shred_call(workspace_id, call_id)

    _show_shred(run(go()), f"call {call_id} of workspace {workspace_id}", as_json)


@keys.command("shred-workspace")
@click.argument("workspace_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_context
def shred_workspace(ctx: click.Context, workspace_id: str, yes: bool, as_json: bool) -> None:
    """Destroy WORKSPACE_ID's workspace key(s) and every call key: all its data is gone.
    Needs workspace.manage (prefer 'callvault erase workspace')."""
    settings = get_settings(ctx)
    if not yes:
        click.confirm(
            f"Shred workspace {workspace_id}? Its workspace key and every call key are destroyed "
            "and " + _IRREVERSIBLE,
            abort=True,
            err=True,
        )

    async def go() -> ShredResult:
        principal = await authorize(
            settings, workspace_id, Permission.WORKSPACE_MANAGE, action="key.workspace.shred"
        )
        async with open_keys(settings) as k:
            admin = KeyAdmin(settings, k, actor=actor_id(principal))
            return await admin.shred_workspace(workspace_id)

    _show_shred(run(go()), f"workspace {workspace_id}", as_json)


def _emit_keys(rows: list[dict[str, Any]]) -> None:
    """A table whose ids are never cut: people copy them into shred and rotate commands."""
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for name in ("key", "scope", "workspace", "call", "wrapped by", "created", "state"):
        table.add_column(name, no_wrap=name != "call")
    for r in rows:
        table.add_row(
            r["key_id"],
            r["scope"],
            r["workspace_id"] or "",
            r["call_id"] or "",
            r["wrapping_key_id"],
            r["created_at"][:19].replace("T", " "),
            "[red]destroyed[/]" if r["destroyed"] else "live",
        )
    console = Console(highlight=False)
    if not console.is_terminal:  # piped: full lines, whatever the width
        console = Console(highlight=False, width=250)
    console.print(table)


def _show_shred(result: ShredResult, what: str, as_json: bool) -> None:
    if as_json:
        emit_json(result.to_json())
    elif result.destroyed_key_ids:
        ids = ", ".join(result.destroyed_key_ids)
        click.echo(f"shredded {what}: destroyed {len(result.destroyed_key_ids)} key(s): {ids}")
    elif result.marker_key_id is not None:
        click.echo(
            f"{what} had no keys; wrote destroyed marker {result.marker_key_id} so data "
            "arriving later cannot get a key"
        )
    else:
        click.echo(f"{what} was already shredded")
    if result.destroyed_key_ids:
        click.secho(_AFTERMATH, fg="yellow", err=True)


@contextlib.contextmanager
def _busy(message: str) -> Iterator[Any]:
    """A spinner on stderr while a long re-wrap runs (plain text when stderr is no terminal)."""
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    with console.status(message) as status:
        yield status
