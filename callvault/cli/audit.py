"""``callvault audit``: verify and export a region's hash-chained, signed audit trail."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import click

from callvault.audit import audit_event, record_once
from callvault.audit_chain import (
    ChainFailure,
    ChainReport,
    ChainVerifier,
    public_key,
    public_key_id,
)
from callvault.audit_store import ChainLog, UnreadableEntry
from callvault.cli.asyncrun import run
from callvault.cli.auth import acting, actor_id, authorize, authorize_anywhere, presented_token
from callvault.cli.main import get_settings
from callvault.cli.output import emit_json, iso_time, json_option
from callvault.control.rbac import Permission
from callvault.errors import ControlError
from callvault.settings import Settings

EXIT_BROKEN = 1
_PROGRESS_MIN = 2000  # entries; below that a progress bar only flickers


@click.group()
def audit() -> None:
    """The audit trail: every significant action with actor, time and details.

    Each region's worker hash-chains its audit events (and the region-less ones) into topic
    audit.chain.<region> and signs every entry with an Ed25519 key (settings audit.*:
    CALLVAULT_AUDIT__SIGNING_KEY_FILE, CALLVAULT_AUDIT__PUBLIC_KEY_FILE). Editing, removing or
    reordering an entry breaks the chain; `verify` finds where. Kept at least one year.
    """


region_option = click.option(
    "--region", help="Region whose chain to read (default: this process's region setting)."
)


def _region(settings: Settings, region: str | None) -> str:
    region = region or settings.region
    if region not in settings.regions:
        raise click.BadParameter(
            f"{region!r} is not one of {', '.join(settings.regions)}", param_hint="--region"
        )
    return region


def _hex_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        digest = bytes.fromhex(value)
    except ValueError:
        raise click.BadParameter("must be a hex SHA-256 hash") from None
    if len(digest) != 32:
        raise click.BadParameter("must be a hex SHA-256 hash (64 hex digits)")
    return digest


@contextlib.contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr for long chains read by a person; nothing otherwise."""
    if total < _PROGRESS_MIN or not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


@dataclass
class _Walk:
    """One pass over a chain: the verification report and where it failed."""

    report: ChainReport
    failure_offset: int | None
    begin: int
    end: int


async def _walk(
    settings: Settings,
    region: str,
    expect_head: bytes | None,
    on_entry: Callable[[int, dict[str, Any], bool], None] | None = None,
) -> _Walk:
    """Read and verify ``audit.chain.<region>`` from its start to its current end; ``on_entry``
    gets (offset, event, verified-so-far) for every entry, in order."""
    verifier = ChainVerifier(public_key(settings), expect_head=expect_head)
    failure_offset: int | None = None
    unreadable: UnreadableEntry | None = None
    async with ChainLog(settings, region) as chain:
        begin, end = await chain.bounds()
        # entries before the log start expired by retention (kept 400 days): start anywhere then
        verifier.first_seq = 0 if begin == 0 else None
        with _progress(end - begin, f"verifying {chain.topic}") as tick:
            async with contextlib.aclosing(chain.entries(on_progress=tick)) as entries:
                while True:
                    try:
                        offset, event = await anext(entries)
                    except StopAsyncIteration:
                        break
                    except UnreadableEntry as exc:
                        unreadable = exc
                        break
                    before = verifier.failure
                    verifier.add(event)
                    if before is None and verifier.failure is not None:
                        failure_offset = offset
                    if on_entry is not None:
                        on_entry(offset, event, verifier.failure is None)
    report = verifier.report()
    if unreadable is not None and report.failure is None:
        failure = ChainFailure(
            report.count, None, None, "edited", f"{unreadable} (not an AuditEvent)"
        )
        report = ChainReport(
            report.count, report.first_seq, report.head_seq, report.head_hash, failure
        )
        failure_offset = unreadable.offset
    return _Walk(report, failure_offset, begin, end)


def _describe_failure(walk: _Walk) -> str:
    f = walk.report.failure
    assert f is not None
    where = f"entry seq {f.seq}" if f.seq is not None else f"entry #{f.position}"
    if walk.failure_offset is not None:
        where += f" (offset {walk.failure_offset})"
    if f.event_id:
        where += f", event {f.event_id}"
    return f"{where}: {f.reason}: {f.message}"


@audit.command("verify")
@region_option
@click.option(
    "--expect-head",
    callback=_hex_option,
    help="A head hash recorded earlier: fail ('truncated') unless the chain still contains it.",
)
@json_option
@click.pass_context
def verify(
    ctx: click.Context, region: str | None, expect_head: bytes | None, as_json: bool
) -> None:
    """Verify the region's audit chain from its start to its current end.

    Checks every entry's hash (edited content), its Ed25519 signature against the audit public
    key, the prev_hash link and consecutive chain.seq (removed or reordered entries). Prints OK
    with the entry count and the head seq and head hash, or the first failure (seq, event id,
    reason: edited, signature, gap/removed, reordered, truncated) with exit code 1.

    Record the head hash printed here: a later `verify --expect-head <hash>` proves the chain was
    not truncated behind it (cutting entries off the end leaves a valid, shorter chain).
    """
    settings = get_settings(ctx)
    region = _region(settings, region)
    run(authorize_anywhere(settings, Permission.AUDIT_READ, action="audit.verify"))
    walk = run(_walk(settings, region, expect_head))
    report = walk.report
    key_id = public_key_id(public_key(settings))
    if as_json:
        emit_json(
            {**report.as_json(), "region": region, "public_key_id": key_id,
             "failure_offset": walk.failure_offset, "log_start_offset": walk.begin}
        )  # fmt: skip
    elif report.ok:
        head = report.head_hash.hex() if report.head_hash is not None else "-"
        click.echo(
            f"OK: audit chain {region}: {report.count} entries verified (key {key_id}), "
            f"head seq {report.head_seq if report.head_seq is not None else '-'}, head hash {head}"
        )
        if walk.begin > 0:
            click.echo(
                f"note: entries before seq {report.first_seq} expired by retention", err=True
            )
    else:
        click.echo(f"FAILED: audit chain {region}: {_describe_failure(walk)}")
    if not report.ok:
        sys.exit(EXIT_BROKEN)  # not ctx.exit: main() runs click non-standalone


@audit.command("export")
@region_option
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "cef"]), default="jsonl", show_default=True,
    help="jsonl: one AuditEvent per line (hashes and signature as hex); cef: ArcSight CEF lines.",
)  # fmt: skip
@click.option(
    "--out", type=click.Path(dir_okay=False, writable=True), help="File to write (default stdout)."
)
@click.option("--from", "since", callback=iso_time, help="Only events at or after this ISO time.")
@click.option("--to", "until", callback=iso_time, help="Only events before this ISO time.")
@click.option(
    "--workspace", "workspace_id", default=None,
    help="Only this workspace's events (required with a token: audit.read there).",
)  # fmt: skip
@click.option(
    "--allow-broken", is_flag=True,
    help="Export even if the chain does not verify; entries from the failure on are marked "
    "chain_status=unverified.",
)  # fmt: skip
@json_option
@click.pass_context
def export(
    ctx: click.Context, region: str | None, fmt: str, out: str | None, since: datetime | None,
    until: datetime | None, workspace_id: str | None, allow_broken: bool, as_json: bool,
) -> None:  # fmt: skip
    """Export the region's audit trail for a SIEM without a live feed, verified first.

    The whole chain is verified while it is read; a broken chain is refused (exit code 1)
    unless --allow-broken. Every export is itself an audit event (audit.export) and is only
    written out once that event is recorded.
    """
    from sinks.siem.formats import to_cef, to_json_obj

    settings = get_settings(ctx)
    region = _region(settings, region)
    if workspace_id is not None:
        run(authorize(settings, workspace_id, Permission.AUDIT_READ, action="audit.export"))
    elif presented_token(settings) is not None:
        raise ControlError("--workspace is required when acting with a token")
    count = 0
    buffer: IO[str] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (closed below)
        max_size=8 * 1024 * 1024, mode="w+", encoding="utf-8"
    )

    def render(_offset: int, event: dict[str, Any], verified: bool) -> None:
        nonlocal count
        at = event["occurred_at"]
        if (since is not None and at < since) or (until is not None and at >= until):
            return
        if workspace_id is not None and event.get("workspace_id") != workspace_id:
            return
        if fmt == "jsonl":
            obj = to_json_obj(event)
            if not verified:
                obj["chain_status"] = "unverified"
            line = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
        else:
            line = to_cef(event)
            if not verified:
                line += " flexString1=unverified flexString1Label=chainStatus"
        buffer.write(line + "\n")
        count += 1

    try:
        walk = run(_walk(settings, region, None, render))
        report = walk.report
        details = {
            "format": fmt, "count": count, "region": region, "verified": report.ok,
            "from": since.isoformat() if since else "", "to": until.isoformat() if until else "",
            "workspace": workspace_id or "",
            "entries": report.count,
            "head_hash": report.head_hash.hex() if report.head_hash is not None else "",
        }  # fmt: skip
        refused = not report.ok and not allow_broken
        if not report.ok:
            details["failure"] = _describe_failure(walk)
        run(_record(settings, region, workspace_id, details, "FAILURE" if refused else "SUCCESS"))
        if refused:
            click.echo(
                f"refused: audit chain {region} does not verify: {_describe_failure(walk)} "
                "(--allow-broken exports it marked)",
                err=True,
            )
            sys.exit(EXIT_BROKEN)  # not ctx.exit: main() runs click non-standalone
        if not report.ok:
            click.echo(f"warning: exporting a broken chain: {_describe_failure(walk)}", err=True)
        buffer.seek(0)
        _write_out(buffer, out)
    finally:
        buffer.close()
    summary = {"region": region, "format": fmt, "count": count, "verified": report.ok,
               "out": out or "-"}  # fmt: skip
    if as_json and out is not None:
        emit_json(summary)
    elif out is not None:
        click.echo(f"exported {count} audit events ({fmt}) of {region} to {out}", err=True)


def _write_out(buffer: IO[str], out: str | None) -> None:
    if out is None:
        for line in buffer:
            click.echo(line, nl=False)
        return
    target = Path(out)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for line in buffer:
                fh.write(line)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ControlError(f"cannot write {out}: {exc}") from None


async def _record(
    settings: Settings, region: str, workspace_id: str | None, details: dict[str, Any],
    outcome: Any,
) -> None:  # fmt: skip
    """The export's own audit event; the export is not written out unless this succeeds."""
    event = audit_event(
        "audit.export", actor_kind="USER", actor_id=actor_id(await acting(settings)),
        outcome=outcome, region=region, workspace_id=workspace_id,
        target=f"audit.chain.{region}", details=details,
    )  # fmt: skip
    await record_once(settings, event)
