"""``callvault recordings list|get`` and ``callvault transcripts get``: governed access for people.

``recordings list`` shows what is stored (metadata from the manifests, nothing decrypted) to
whoever may view recordings (``recordings.view``); taking a copy is ``recordings get``.

Each decrypts one artifact of one call from the region's bucket with the call's key, after the
permission check (``recordings.download`` / ``transcripts.view`` in the call's workspace, when the
CLI holds a token; the local operator otherwise, as for every command), and each access is an
audit event. A shredded (expired or erased) call fails with a clear error, never with noise.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from callvault.artifacts import artifact_aad, decrypt_artifact, find_manifest, manifests
from callvault.audit import AuditLog, audit_event, cli_actor, record_once
from callvault.cli.asyncrun import run
from callvault.cli.auth import actor_id, authorize
from callvault.cli.main import get_settings
from callvault.cli.output import emit_json, emit_table, iso_time, json_option
from callvault.control.keys import open_keys
from callvault.control.rbac import Permission
from callvault.crypto.envelope import Aad
from callvault.crypto.errors import KeyDestroyed, KeyNotFound
from callvault.errors import ControlError
from callvault.files import PRIVATE_MODE
from callvault.settings import Settings
from sinks.objects import layout
from sinks.objects.store import ObjectStore


async def _fetch(
    settings: Settings, workspace_id: str, call_id: str, artifact: layout.Artifact,
    permission: Permission, action: str, out: Path | None,
) -> dict[str, Any]:  # fmt: skip
    principal = await authorize(settings, workspace_id, permission, action=action)
    actor = principal.user_id if principal else cli_actor()
    store = ObjectStore(settings)
    try:
        manifest = await find_manifest(store, workspace_id, call_id)
        entry = manifest["artifacts"].get(artifact)
        if entry is None:
            raise ControlError(f"call {call_id} has no {artifact}")
        async with open_keys(settings) as keys:
            try:
                key = await keys.ring.key_for(
                    entry["key_id"], workspace_id=workspace_id, call_id=call_id
                )
            except (KeyDestroyed, KeyNotFound) as exc:
                raise ControlError(f"call {call_id} can no longer be decrypted: {exc}") from None
            # audited before any byte is released: an access that cannot be audited fails
            await AuditLog(settings, keys.store.producer).record(
                audit_event(
                    action, actor_kind="USER", actor_id=actor, workspace_id=workspace_id,
                    region=manifest["region"], target=f"call:{call_id}",
                    details={"artifact": artifact, "object": entry["key"],
                             "key_id": entry["key_id"]},
                )
            )  # fmt: skip
        aad = artifact_aad(workspace_id, call_id, artifact, manifest)
        digest, size = await asyncio.to_thread(_write_plaintext, store, entry, key, aad, out)
        if digest != entry["plaintext_sha256"]:
            raise ControlError(f"{artifact} of call {call_id} does not match its manifest hash")
    finally:
        store.close()
    return {
        "workspace_id": workspace_id, "call_id": call_id, "artifact": artifact,
        "object": f"s3://{store.bucket}/{entry['key']}", "key_id": entry["key_id"],
        "bytes": size, "sha256": digest, "out": str(out) if out else "-",
        "expires_at": manifest["expires_at"],
    }  # fmt: skip


def _write_plaintext(
    store: ObjectStore, entry: dict[str, Any], key: bytes, aad: Aad, out: Path | None
) -> tuple[str, int]:
    """Blocking: stream-decrypt the object into ``out`` (or stdout); (sha256 hex, bytes). A file
    whose content does not match the manifest hash is removed."""
    digest, size = hashlib.sha256(), 0
    sink = _open_out(out)
    try:
        for plaintext in decrypt_artifact(store, entry, key, aad):
            digest.update(plaintext)
            size += len(plaintext)
            sink.write(plaintext)
    finally:
        if sink is not sys.stdout.buffer:
            sink.close()
    if out is not None and digest.hexdigest() != entry["plaintext_sha256"]:
        out.unlink(missing_ok=True)
    return digest.hexdigest(), size


def _open_out(out: Path | None) -> Any:
    if out is None:
        return sys.stdout.buffer
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    os.fchmod(fd, PRIVATE_MODE)
    return os.fdopen(fd, "wb")


def _report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(result)
    else:
        click.echo(
            f"{result['artifact']} of call {result['call_id']}: {result['bytes']} bytes "
            f"(sha256 {result['sha256'][:16]}...) -> {result['out']}",
            err=result["out"] == "-",
        )


_call = click.argument("call_id")
_workspace = click.option(
    "--workspace", "workspace_id", required=True, help="The call's workspace."
)


@click.group()
def recordings() -> None:
    """Call recordings in the region's bucket (MP3, encrypted per call)."""


@recordings.command("list")
@_workspace
@click.option("--from", "since", callback=iso_time, help="Calls started on or after (ISO date).")
@click.option("--to", "until", callback=iso_time, help="Calls started on or before (ISO date).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@json_option
@click.pass_context
def recordings_list(
    ctx: click.Context, workspace_id: str, since: datetime | None, until: datetime | None,
    limit: int, as_json: bool,
) -> None:  # fmt: skip
    """The workspace's stored recordings (newest first; default: the last 7 days): call, start,
    duration, artifacts, expiry. Metadata only, nothing is decrypted. Needs recordings.view;
    audited (recording.list)."""
    settings = get_settings(ctx)
    today = datetime.now(UTC).date()
    first = since.date() if since else today - timedelta(days=7)
    last = until.date() if until else today
    rows = run(_list(settings, workspace_id, first, last, limit))
    if as_json:
        emit_json(rows)
        return
    cols = ["call_id", "call_started_at", "duration_s", "artifacts", "expires_at"]
    emit_table(f"recordings of {workspace_id}, {first} to {last}", cols,
               [[r[c] for c in cols] for r in rows])  # fmt: skip


async def _list(
    settings: Settings, workspace_id: str, first: date, last: date, limit: int
) -> list[dict[str, Any]]:
    principal = await authorize(
        settings, workspace_id, Permission.RECORDINGS_VIEW, action="recording.list"
    )
    store = ObjectStore(settings)
    rows: list[dict[str, Any]] = []
    try:
        async for manifest in manifests(store, workspace_id, first, last):
            arts = manifest["artifacts"]
            rows.append({
                "call_id": manifest["call_id"], "call_started_at": manifest["call_started_at"],
                "duration_s": round((manifest.get("duration_ms") or 0) / 1000, 1),
                "artifacts": ",".join(sorted(arts)), "expires_at": manifest["expires_at"],
                "bytes": sum(int(a.get("size", 0)) for a in arts.values()),
            })  # fmt: skip
            if len(rows) >= limit:
                break
    finally:
        store.close()
    await record_once(settings, audit_event(
        "recording.list", actor_kind="USER", actor_id=actor_id(principal),
        workspace_id=workspace_id, target=f"workspace:{workspace_id}",
        details={"from": first.isoformat(), "to": last.isoformat(), "listed": len(rows)},
    ))  # fmt: skip
    return rows


@recordings.command("get")
@_call
@_workspace
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="File to write the decrypted MP3 to (created 0600).")  # fmt: skip
@json_option
@click.pass_context
def recordings_get(
    ctx: click.Context, call_id: str, workspace_id: str, out: Path, as_json: bool
) -> None:
    """Decrypt CALL_ID's recording to a file. Needs recordings.download (owners and admins by
    default); every download is an audit event (recording.download)."""
    settings = get_settings(ctx)
    result = run(
        _fetch(
            settings,
            workspace_id,
            call_id,
            "recording",
            Permission.RECORDINGS_DOWNLOAD,
            "recording.download",
            out,
        )
    )
    _report(result, as_json)


@click.group()
def transcripts() -> None:
    """Call transcripts and summaries in the region's bucket (JSON, encrypted per call)."""


@transcripts.command("get")
@_call
@_workspace
@click.option("--summary", is_flag=True, help="The AI summary instead of the transcript.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File for the JSON (created 0600); default: standard output.")  # fmt: skip
@json_option
@click.pass_context
def transcripts_get(
    ctx: click.Context, call_id: str, workspace_id: str, summary: bool, out: Path | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Decrypt CALL_ID's transcript (or summary) as JSON. Needs transcripts.view; every access
    is an audit event (transcript.view)."""
    settings = get_settings(ctx)
    artifact: layout.Artifact = "summary" if summary else "transcript"
    result = run(
        _fetch(
            settings,
            workspace_id,
            call_id,
            artifact,
            Permission.TRANSCRIPTS_VIEW,
            "transcript.view",
            out,
        )
    )
    if out is not None or as_json:
        _report(result, as_json)
