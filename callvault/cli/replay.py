"""``callvault replay``: read a sealed topic (or the audit events) over a time window.

Replaying is a permissioned act (``topics.replay``, and ``topics.decrypt`` for plaintext, in the
workspace, when the CLI holds a token; the local operator otherwise) and an audited one: the
``topics.replay`` event is recorded before the first record is released. Records of erased or
expired calls are skipped and counted, never released (see :mod:`callvault.replay`).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from callvault.audit import cli_actor
from callvault.cli.asyncrun import run
from callvault.cli.auth import TOKEN_ENV, authorize, presented_token
from callvault.cli.main import get_settings
from callvault.cli.output import emit_json, json_option
from callvault.control.rbac import Permission
from callvault.replay import (
    ACTION,
    REPLAYABLE,
    REPUBLISHABLE,
    Destination,
    JsonLines,
    Progress,
    ReplayRefused,
    ReplayRequest,
    ReplayResult,
    Republish,
    parse_time,
)
from callvault.replay import replay as run_replay
from callvault.settings import Settings


def _time(_ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


async def _replay(
    settings: Settings, request: ReplayRequest, progress: Progress | None
) -> ReplayResult:
    request.validate()  # a refusal needs neither Kafka nor a permission check
    actor = cli_actor()
    if presented_token(settings) is not None:
        if request.workspace_id is None:
            raise ReplayRefused(
                "--workspace is required when acting as a user (permissions are per workspace; "
                f"only the local operator, without {TOKEN_ENV}, replays every workspace)"
            )
        principal = await authorize(
            settings, request.workspace_id, Permission.TOPICS_REPLAY, action=ACTION
        )
        if request.decrypt:
            principal = await authorize(
                settings, request.workspace_id, Permission.TOPICS_DECRYPT, action=ACTION
            )
        assert principal is not None
        actor = principal.user_id
    destination: Destination = (
        Republish(settings, request.to_topic)
        if request.to_topic is not None
        else JsonLines(request.out, sys.stdout)
    )
    return await run_replay(settings, request, destination, actor=actor, progress=progress)


class _Bar:
    """rich progress on stderr, total = planned offsets over every partition."""

    def __init__(self, bar: RichProgress, label: str) -> None:
        self._bar = bar
        self._task = bar.add_task(label, total=None)

    def total(self, n: int) -> None:
        self._bar.update(self._task, total=n)

    def advance(self, n: int) -> None:
        self._bar.advance(self._task, n)


@contextlib.contextmanager
def _progress(enabled: bool, label: str) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())  # fmt: skip
    with RichProgress(*columns, console=Console(stderr=True), transient=True) as bar:
        yield _Bar(bar, label)


def _summary_line(result: ReplayResult) -> str:
    c, r = result.counts, result.request
    return (
        f"replayed {r.topic} {r.since.isoformat()} .. {r.until.isoformat()} -> {r.destination}: "
        f"scanned {c.scanned}, matched {c.matched}, written {c.written}, "
        f"skipped_erased {c.skipped_erased}, skipped_expired {c.skipped_expired}, "
        f"undecodable {c.undecodable} (replay {result.replay_id})"
    )


@click.command()
@click.option("--topic", required=True, metavar="TOPIC",
              help=f"Logical topic to read: {', '.join(REPLAYABLE)}.")  # fmt: skip
@click.option("--from", "since", required=True, callback=_time, metavar="TIME",
              help="Window start (inclusive): ISO-8601 (2026-11-27T10:00:00Z), 'now', or "
              "relative (-15m, -2h, -1d).")  # fmt: skip
@click.option("--to", "until", default="now", show_default=True, callback=_time,
              metavar="TIME", help="Window end (inclusive), same forms as --from.")  # fmt: skip
@click.option("--workspace", "workspace_id",
              help="Only this workspace's records (required when acting as a user).")  # fmt: skip
@click.option("--call", "call_id", help="Only this call's records.")
@click.option("--decrypt", is_flag=True,
              help="Open the sealed fields with the call keys (needs topics.decrypt): text for "
              "transcripts, base64 for audio, the phone numbers for metadata.")  # fmt: skip
@click.option("--to-topic", metavar="TOPIC",
              help=f"Republish the sealed records (bytes, key, headers, timestamp) to this "
              f"logical topic ({', '.join(REPUBLISHABLE)}; same record type only).")  # fmt: skip
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write JSON lines to this file (created 0600); default: standard output.",
)
@json_option
@click.pass_context
def replay(
    ctx: click.Context, topic: str, since: datetime, until: datetime, workspace_id: str | None,
    call_id: str | None, decrypt: bool, to_topic: str | None, out: Path | None, as_json: bool,
) -> None:  # fmt: skip
    """Replay a topic over a time window: the records of [--from, --to] on every partition.

    Seeks each partition by timestamp and stops at its first record after --to (or at the end
    offset when the replay started). Records are JSON lines on standard output (or --out),
    or republished as they are with --to-topic (acks=all; every sink deduplicates, so a
    republish is idempotent). Records of erased, deleted or expired calls are never released,
    with or without --decrypt: they are counted as skipped_erased / skipped_expired. Raw
    ingest.* topics are not replayable: they hold data before suppression, redaction and
    sealing. --decrypt never goes to a topic.

    Needs topics.replay (and topics.decrypt with --decrypt) in --workspace when the CLI holds
    a token; every replay is an audit event (topics.replay), recorded before any record is
    released. The summary (scanned, matched, written, skipped_erased, skipped_expired,
    undecodable) goes to stderr, or with --json as a JSON object (to stderr when the records
    themselves are on stdout).
    """
    settings = get_settings(ctx)
    if to_topic is not None and out is not None:
        raise click.UsageError("--to-topic and --out are alternatives: choose one")
    assert since is not None and until is not None
    request = ReplayRequest(
        topic=topic, since=since, until=until, workspace_id=workspace_id, call_id=call_id,
        decrypt=decrypt, to_topic=to_topic, out=out,
    )  # fmt: skip
    show_bar = not as_json and sys.stderr.isatty()
    with _progress(show_bar, f"replaying {topic}") as progress:
        result = run(_replay(settings, request, progress))
    records_on_stdout = to_topic is None and out is None
    if as_json and not records_on_stdout:
        emit_json(result.as_json())
    elif as_json:
        click.echo(json.dumps(result.as_json(), sort_keys=True), err=True)
    else:
        click.echo(_summary_line(result), err=True)
