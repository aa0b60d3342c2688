"""``callvault dsar export | open``: a data subject's copy of their data, by phone number.

``export`` needs export.execute in the workspace (owners and admins by default, when the CLI
holds a token; the local operator otherwise) and is audited (``dsar.export``); the logic is in
:mod:`callvault.dsar`. ``open`` is the recipient's side: it needs no settings, no broker and no
account, only the archive and its passphrase.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from callvault.audit import cli_actor
from callvault.cli.asyncrun import run
from callvault.cli.auth import authorize
from callvault.cli.main import get_settings
from callvault.cli.output import emit_json, json_option
from callvault.control.rbac import Permission
from callvault.control.trunks import generate_password
from callvault.dsar import DsarError, OnProgress, export_subject, open_archive
from callvault.settings import Settings

_passphrase_file = click.option(
    "--passphrase-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="File whose first line is the passphrase (kept out of argv and shell history; "
    "at least 16 characters for an export).",
)


def _read_passphrase(path: Path) -> str:
    lines = path.read_text(encoding="utf-8").splitlines()
    passphrase = lines[0].strip() if lines else ""
    if not passphrase:
        raise DsarError(f"{path} holds no passphrase")
    return passphrase


@contextmanager
def _progress_bar() -> Iterator[OnProgress]:
    """A bar over the subject's calls on stderr (stdout stays clean for --json)."""
    with Progress(
        TextColumn("exporting calls"), BarColumn(), MofNCompleteColumn(),
        console=Console(stderr=True), transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task("calls", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


async def _export(
    settings: Settings, workspace_id: str, phone: str, out: Path, passphrase: str,
    progress: OnProgress,
) -> dict[str, Any]:  # fmt: skip
    principal = await authorize(
        settings, workspace_id, Permission.EXPORT_EXECUTE, action="dsar.export"
    )
    actor = principal.user_id if principal else cli_actor()
    return await export_subject(
        settings, workspace_id, phone, out, passphrase, actor=actor, progress=progress
    )


@click.group()
def dsar() -> None:
    """Data-subject access requests: export everything held about one phone number."""


@dsar.command("export")
@click.option("--workspace", "workspace_id", required=True, help="The workspace asked.")
@click.option("--phone", required=True,
              help="The subject's number, caller or callee, any formatting; '-' reads it from "
                   "standard input (kept out of argv).")  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The encrypted archive to write (created 0600, never overwritten).")  # fmt: skip
@_passphrase_file
@json_option
@click.pass_context
def dsar_export(
    ctx: click.Context, workspace_id: str, phone: str, out: Path, passphrase_file: Path | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Gather every call, transcript, summary and recording of a phone number into one
    encrypted archive with a manifest. Without --passphrase-file a 24-character passphrase is
    generated and shown once on stderr: send it by another channel than the archive. Needs
    export.execute; audited as dsar.export (with the number's hash, never the number)."""
    settings = get_settings(ctx)
    if phone == "-":
        phone = sys.stdin.readline().strip()
    passphrase = _read_passphrase(passphrase_file) if passphrase_file else generate_password()
    with _progress_bar() as progress:
        result = run(_export(settings, workspace_id, phone, out, passphrase, progress))
    if passphrase_file is None:
        click.echo(f"passphrase {passphrase}", err=True)
        click.echo(
            "The passphrase is shown once and stored nowhere; the archive cannot be opened "
            "without it.",
            err=True,
        )
    if as_json:
        emit_json(result)
        return
    click.echo(
        f"{result['request_id']}: {result['calls']} calls of {result['subject']} "
        f"({result['exported']} exported, {len(result['erased'])} erased, "
        f"{len(result['missing'])} without stored artifacts), {result['files']} files -> "
        f"{result['archive']} (sha256 {result['archive_sha256'][:16]}...)"
    )


@dsar.command("open")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory to extract into (must not exist, or be empty).")  # fmt: skip
@_passphrase_file
@json_option
def dsar_open(archive: Path, out: Path, passphrase_file: Path | None, as_json: bool) -> None:
    """Decrypt ARCHIVE and check every file against its manifest; nothing is left behind
    unless the whole archive authenticated and matched."""
    if passphrase_file is not None:
        passphrase = _read_passphrase(passphrase_file)
    elif sys.stdin.isatty():
        passphrase = click.prompt("Passphrase", hide_input=True)
    else:
        passphrase = sys.stdin.readline().strip()
    result = open_archive(archive, out, passphrase)
    if as_json:
        emit_json(result)
        return
    click.echo(
        f"{result['request_id']} ({result['workspace_id']}, exported {result['exported_at']}): "
        f"{result['calls']} calls of {result['subject']}, {result['files']} files verified "
        f"-> {result['out']}"
    )
    if result["erased"]:
        click.echo(f"erased (no content): {', '.join(result['erased'])}")
