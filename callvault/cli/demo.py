"""``callvault demo``: a real SIP call through the whole pipeline, ending with where it landed.

Stack up -> topics -> workspace -> trunk credential -> stream worker + SIP ingest node ->
``callvault call`` places a call with digest auth and streams a tone as RTP -> the node
publishes metadata and audio -> the worker seals them, writes ClickHouse rows, an encrypted MP3
recording into the region's S3 bucket, and forwards the audit events to the stack's rsyslog
(syslog over TLS). The demo then reads each of them back the way an authorised reader would.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click

from callvault.analytics_client import AnalyticsQueryError, QueryResult, query
from callvault.cli.asyncrun import run
from callvault.cli.main import get_settings
from callvault.control.trunks import IssuedCredential, TrunkDirectory
from callvault.control.workspaces import WorkspaceDirectory
from callvault.errors import CallvaultError, ControlError
from callvault.kafka_client import kafka_options
from callvault.settings import Settings
from callvault.topics import Topics, ensure_topics
from callvault.worker_process import WorkerProcess, ingest_node_process

DEMO_TRUNK = "demo-pbx"
#: How long the demo waits for each kind of result before it reports what it has.
_WAIT_S = 90.0
_SD_PARAM = re.compile(r'\b(eventId|action|outcome|actor|workspace|target)="((?:[^"\\]|\\.)*)"')


def _say(msg: str) -> None:
    click.secho(f"==> {msg}", fg="cyan", err=True)


@click.command()
@click.option("--workspace", "workspace_id", default="demo-eu", show_default=True)
@click.option(
    "--calls",
    type=click.IntRange(1, 100),
    default=1,
    show_default=True,
    help="Number of SIP calls to place, one after the other.",
)
@click.option(
    "--seconds",
    type=click.FloatRange(0.5, 600),
    default=3.0,
    show_default=True,
    help="Audio length of each call.",
)
@click.option("--keep-running", is_flag=True, help="Leave the worker and ingest node running.")
@click.pass_context
def demo(ctx: click.Context, workspace_id: str, calls: int, seconds: float,
         keep_running: bool) -> None:  # fmt: skip
    """Place real SIP calls through ingest -> streams -> ClickHouse and show where data landed."""
    from callvault.devstack import stack

    settings, syslog_file = _with_syslog(get_settings(ctx))
    _say("starting the local stack (Kafka, SeaweedFS, rsyslog; chDB is embedded in the worker)")
    for service in stack.up(settings):
        click.echo(f"    {service.name:<10} {service.state:<16} {service.endpoint}", err=True)
    _say("ensuring topics")
    run(ensure_topics(settings))
    syslog_offset = _size(syslog_file)
    run(_ensure_workspace(settings, workspace_id))
    cred = run(_fresh_credential(settings, workspace_id))
    _say(f"trunk {DEMO_TRUNK}: username {cred.credential.username} (password issued for this run)")

    started: list[WorkerProcess] = []
    try:
        started += _ensure_services(settings)
        since = datetime.now(UTC)
        sip_ids = []
        for n in range(calls):
            _say(
                f"placing SIP call {n + 1}/{calls} to {settings.ingest.advertised_host}:"
                f"{settings.ingest.sip_port} (UDP, digest auth, {seconds:.0f} s of PCMU audio)"
            )
            sip_ids.append(_place(settings, cred, seconds))
        rows = _wait_for_rows(settings, workspace_id, since, calls)
        click.echo(f"Rows in {settings.clickhouse.database}.calls (workspace {workspace_id}):")
        for row in rows.rows:
            for name, value in zip(rows.columns, row, strict=True):
                click.echo(f"  {name:<11} {value}")
            click.echo("")
        call_ids = [r[0] for r in rows.rows]
        audio = run(_sealed_audio(settings, call_ids, int(seconds * 1000) // 20 * 160))
        recordings = run(_recordings(settings, workspace_id, rows))
        decrypted = [f"call:{r.call_id}" for r in recordings if r.key is not None]
        events = (
            _audit_lines(syslog_file, syslog_offset, decrypted) if syslog_file is not None else []
        )
        topics = Topics(settings)
        click.echo("Where it landed:")
        click.echo(f"  SIP signalling   ingest node {settings.ingest.sip_host}:"
                   f"{settings.ingest.sip_port} (calls {', '.join(sip_ids)})")  # fmt: skip
        click.echo(f"  call metadata    Kafka {settings.kafka.bootstrap} topic "
                   f"{topics.ingest_metadata} -> sealed by the worker into "
                   f"{topics.sealed_metadata}")  # fmt: skip
        for call_id, (chunks, size, key_id) in audio.items():
            click.echo(f"  call audio       topic {topics.name('sealed.audio')}: call "
                       f"{call_id[:8]}: {chunks} AES-256-GCM chunks under call key {key_id}, "
                       f"{size} bytes of G.711 when decrypted")  # fmt: skip
        for rec in recordings:
            _echo_recording(rec, seconds)
        click.echo(f"  analytics rows   {settings.clickhouse_dsn.split('@')[-1]} "
                   f"tables {settings.clickhouse.database}.calls and .call_events")  # fmt: skip
        click.echo(f"  audit events     topic {topics.audit_events}")
        _echo_syslog(settings, syslog_file, events)
        click.echo(f"  keys             topic {topics.name('control.keys')} (wrapped; master key "
                   f"{settings.master_key_file})")  # fmt: skip
        kinds = ("metadata", "audio", "transcript")
        dead = ", ".join(topics.name(f"deadletter.{k}") for k in kinds)
        click.echo(f"  dead letters     topics {dead}")
    finally:
        if not keep_running:
            for proc in reversed(started):
                _say(f"stopping {proc.argv[3]}")
                proc.stop()


def _ensure_services(settings: Settings) -> list[WorkerProcess]:
    started = []
    try:
        query(settings, "SELECT 1")
        _say("a stream worker is already running; using it")
    except AnalyticsQueryError:
        _say("starting the stream worker")
        worker = WorkerProcess(settings, settings.home / "logs" / "demo-worker.log")
        worker.start()
        started.append(worker)
        run(worker.wait_healthy())
    node = ingest_node_process(settings, settings.home / "logs" / "demo-ingest.log")
    if _answers(node.health_url):
        _say("an ingest node is already running; using it")
    else:
        _say("starting the SIP ingest node")
        node.start()
        started.append(node)
        run(node.wait_healthy())
    return started


def _answers(url: str) -> bool:
    from callvault.worker_process import _answers_200

    return _answers_200(url)


def _place(settings: Settings, cred: IssuedCredential, seconds: float) -> str:
    from sip_ingest.client import CallFailed, CallOptions, place_call
    from sip_ingest.media.wav import encode_g711, sine_pcm16

    opts = CallOptions(
        host=settings.ingest.advertised_host,
        port=settings.ingest.sip_port,
        username=cred.credential.username,
        password=cred.password,
        caller="+447700900123",
        callee="agent-1",
        audio=encode_g711(sine_pcm16(440, int(seconds * 1000)), "PCMU"),
    )
    try:
        outcome = asyncio.run(place_call(opts))
    except CallFailed as exc:
        raise CallvaultError(f"the demo call failed: {exc}") from None
    click.echo(f"    sent {opts.audio and len(opts.audio) // 160} RTP packets; BYE answered "
               f"{outcome.status}", err=True)  # fmt: skip
    return outcome.sip_call_id


def _wait_for_rows(settings: Settings, workspace_id: str, since: datetime, n: int) -> QueryResult:
    """Poll until the worker has written the ENDED rows of the demo's calls (bounded)."""
    db = settings.clickhouse.database
    # workspace_id was validated by the control plane (a plain identifier); the rest is ours
    where = (
        f"workspace_id = '{workspace_id}' AND trunk_id = '{DEMO_TRUNK}' AND state = 'ENDED' "
        f"AND call_started_at >= toDateTime64('{since:%Y-%m-%d %H:%M:%S}', 3, 'UTC')"
    )
    columns = (
        "call_id, region, state, trunk_id, agent_id, caller_number_masked AS caller, "
        "toDate(call_started_at) AS started, intDiv(duration_ms, 1000) AS secs, end_reason, "
        "toDate(expires_at) AS expires"
    )
    sql = f"SELECT {columns} FROM {db}.calls FINAL WHERE {where} ORDER BY call_started_at"  # noqa: S608
    deadline = time.monotonic() + 90
    while True:
        rows = query(settings, sql)
        if len(rows.rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


async def _sealed_audio(
    settings: Settings, call_ids: list[str], expected_bytes: int, timeout_s: float = 60.0
) -> dict[str, tuple[int, int, str]]:
    """Per call: sealed chunks on ``sealed.audio``, plaintext bytes they decrypt to with the
    call's key, and the key id — read back the way an authorised reader would."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from callvault.control.keys import open_keys
    from callvault.crypto import Aad, open_artifact, peek_key_id
    from callvault.topics import topic_partitions
    from schemas.codec import get_codec

    topic = Topics(settings).name("sealed.audio")
    codec = get_codec()
    out = {c: (0, 0, "") for c in call_ids}
    consumer = AIOKafkaConsumer(**kafka_options(settings), group_id=None)
    await consumer.start()
    try:
        async with open_keys(settings) as keys:
            tps = [TopicPartition(topic, p) for p in await topic_partitions(consumer, topic)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            deadline = time.monotonic() + timeout_s
            while any(v[1] < expected_bytes for v in out.values()):
                if time.monotonic() > deadline:
                    break
                for msgs in (await consumer.getmany(timeout_ms=500)).values():
                    for m in msgs:
                        if m.key is None or m.key.decode() not in out or not m.value:
                            continue
                        rec = codec.decode("SealedAudioChunk", m.value)
                        aad = Aad(rec["workspace_id"], rec["call_id"], "audio", rec["region"])
                        plain = await open_artifact(keys.ring, rec["ciphertext"], aad)
                        n, size, _ = out[rec["call_id"]]
                        key_id = peek_key_id(rec["ciphertext"])
                        out[rec["call_id"]] = (n + 1, size + len(plain), key_id)
    finally:
        await consumer.stop()
    return out


async def _ensure_workspace(settings: Settings, workspace_id: str) -> None:
    async with WorkspaceDirectory(settings) as d:
        try:
            policy = d.get(workspace_id)
            _say(f"workspace {workspace_id} exists (region {policy.region})")
        except ControlError:
            policy = await d.create(workspace_id, region=settings.region)
            _say(f"created workspace {workspace_id} (region {policy.region}, "
                 f"retention {policy.retention_days} days)")  # fmt: skip


async def _fresh_credential(settings: Settings, workspace_id: str) -> IssuedCredential:
    """The password is shown once, so every demo run issues (or rotates to) a new one."""
    async with TrunkDirectory(settings) as trunks:
        try:
            trunks.active(DEMO_TRUNK)
        except ControlError:
            return await trunks.create(workspace_id, DEMO_TRUNK)
        return await trunks.rotate(DEMO_TRUNK)


# -- the recording in S3 --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Recording:
    call_id: str
    bucket: str
    key: str | None = None
    size: int = 0
    key_id: str = ""
    expires_at: str = ""
    mp3_seconds: float = 0.0
    frames: int = 0
    sample_rate: int = 0
    problem: str = ""


async def _recordings(settings: Settings, workspace_id: str, rows: QueryResult) -> list[_Recording]:
    """Per call: wait for its manifest, fetch the encrypted recording, check its hash, decrypt it
    with the call key and decode the MP3 frame headers (duration from the frames themselves)."""
    from callvault.audit import AuditLog, audit_event, cli_actor
    from callvault.control.keys import open_keys
    from callvault.crypto.envelope import Aad
    from callvault.crypto.segmented import decrypt_stream
    from sinks.objects import layout
    from sinks.objects.store import ObjectStore
    from sinks.recordings.mp3 import iter_frames

    col = {name: i for i, name in enumerate(rows.columns)}
    out: list[_Recording] = []
    stores: dict[str, ObjectStore] = {}
    async with open_keys(settings) as keys:
        for row in rows.rows:
            call_id, region = row[col["call_id"]], row[col["region"]]
            started = date.fromisoformat(str(row[col["started"]]))
            store = stores.setdefault(region, ObjectStore(settings, region))
            manifest_key = layout.call_prefix(workspace_id, call_id, started) + layout.MANIFEST
            manifest = await _poll(lambda k=manifest_key, s=store: _json_object(s, k))
            rec = (manifest or {}).get("artifacts", {}).get("recording")
            if rec is None:
                why = "no manifest" if manifest is None else "the manifest lists no recording"
                out.append(_Recording(call_id, store.bucket, problem=f"{why} after {_WAIT_S:g} s"))
                continue
            body = await store.get(rec["key"])
            if hashlib.sha256(body).hexdigest() != rec["ciphertext_sha256"]:
                raise CallvaultError(f"{rec['key']}: ciphertext does not match its manifest hash")
            key = await keys.ring.key_for(rec["key_id"], workspace_id=workspace_id, call_id=call_id)
            # reading a recording is an audited action: the event is durable before the plaintext
            await AuditLog(settings, keys.store.producer).record(
                audit_event(
                    "recording.decrypt",
                    actor_kind="USER",
                    actor_id=cli_actor(),
                    workspace_id=workspace_id,
                    region=region,
                    target=f"call:{call_id}",
                    details={"key_id": rec["key_id"], "object": rec["key"], "by": "callvault demo"},
                )
            )
            aad = Aad(workspace_id, call_id, "recording", region)
            mp3 = b"".join(decrypt_stream(key, [body], aad))
            frames = list(iter_frames(mp3))
            rate = frames[0].sample_rate if frames else 0
            out.append(
                _Recording(
                    call_id,
                    store.bucket,
                    key=rec["key"],
                    size=len(body),
                    key_id=rec["key_id"],
                    expires_at=manifest.get("expires_at", "") if manifest else "",
                    mp3_seconds=sum(f.samples for f in frames) / rate if rate else 0.0,
                    frames=len(frames),
                    sample_rate=rate,
                )
            )
    for store in stores.values():
        store.close()
    return out


async def _json_object(store: Any, key: str) -> dict[str, Any] | None:
    if await store.head(key) is None:
        return None
    doc = json.loads(await store.get(key))
    return doc if isinstance(doc, dict) else None


async def _poll(fetch: Any) -> Any:
    """``await fetch()`` until it returns something, or ``None`` once :data:`_WAIT_S` passed."""
    deadline = time.monotonic() + _WAIT_S
    while True:
        got = await fetch()
        if got is not None or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.5)


def _echo_recording(rec: _Recording, seconds: float) -> None:
    if rec.key is None:
        click.echo(f"  recording        bucket {rec.bucket}: call {rec.call_id[:8]}: {rec.problem}")
        return
    click.echo(f"  recording        s3://{rec.bucket}/{rec.key}")
    click.echo(f"                   {rec.size} bytes, segmented AES-256-GCM under call key "
               f"{rec.key_id}, expires {rec.expires_at}")  # fmt: skip
    click.echo(f"                   decrypted: MP3, {rec.frames} frames at {rec.sample_rate} Hz = "
               f"{rec.mp3_seconds:.2f} s of audio for a {seconds:g} s call")  # fmt: skip


# -- the audit events in rsyslog ------------------------------------------------------------------


def _with_syslog(settings: Settings) -> tuple[Settings, Path | None]:
    """Settings with the worker's syslog fan-out aimed at the stack's rsyslog (over TLS, verified
    against the stack's CA), and the file rsyslog writes. A syslog destination the user configured
    is kept; then there is no local file to show (``None``)."""
    from callvault.devstack import rsyslog

    siem = settings.siem
    if siem.syslog_enabled and (
        siem.syslog_host not in ("127.0.0.1", "localhost")
        or siem.syslog_port != settings.dev.syslog_port
    ):
        return settings, None
    siem = siem.model_copy(
        update={
            "syslog_enabled": True,
            "syslog_host": "127.0.0.1",
            "syslog_port": settings.dev.syslog_port,
            "syslog_ca_file": siem.syslog_ca_file or settings.kafka_ca_file,
        }
    )
    return settings.model_copy(update={"siem": siem}), rsyslog.messages_file(settings)


def _size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path is not None else 0
    except FileNotFoundError:
        return 0


def _audit_lines(path: Path, offset: int, targets: list[str]) -> list[dict[str, str]]:
    """The syslog messages rsyslog received since ``offset``, as their structured-data params.

    Waits (bounded) until the events this run published are there: the trunk credential's, and
    the demo's own ``recording.decrypt`` of each call in ``targets``.
    """
    deadline = time.monotonic() + _WAIT_S
    while True:
        events = _read_syslog(path, offset)
        trunk = any(e.get("action", "").startswith("trunk.") for e in events)
        seen = {e.get("target") for e in events if e.get("action") == "recording.decrypt"}
        if (trunk and seen >= set(targets)) or time.monotonic() > deadline:
            return events
        time.sleep(0.3)


def _read_syslog(path: Path, offset: int) -> list[dict[str, str]]:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return []
    events = []
    for raw in data.decode("utf-8", errors="replace").splitlines():
        if raw.strip():
            params = {k: v.replace('\\"', '"') for k, v in _SD_PARAM.findall(raw)}
            events.append({**params, "_raw": raw})
    return events


def _echo_syslog(settings: Settings, path: Path | None, events: list[dict[str, str]]) -> None:
    siem = settings.siem
    if path is None:
        click.echo(f"                   -> your syslog {siem.syslog_host}:{siem.syslog_port} "
                   "(not the stack's rsyslog, so not shown here)")  # fmt: skip
        return
    click.echo(f"                   -> rsyslog tls://127.0.0.1:{siem.syslog_port} (RFC 5425, "
               f"{siem.syslog_format.upper()}) -> {path}")  # fmt: skip
    if not events:
        click.echo(f"                   no events of this run arrived within {_WAIT_S:g} s")
        return
    actions: dict[str, int] = {}
    for e in events:
        actions[e.get("action", "?")] = actions.get(e.get("action", "?"), 0) + 1
    summary = ", ".join(f"{a} x{n}" for a, n in sorted(actions.items()))
    plural = "s" if len(events) != 1 else ""
    click.echo(f"                   {len(events)} event{plural} of this run: {summary}")
    shown: set[str] = set()
    for e in events:  # one per action, the first few
        action = e.get("action", "?")
        if action in shown or len(shown) >= 3:
            continue
        shown.add(action)
        click.echo(f"                   - {action} {e.get('outcome', '')} by {e.get('actor', '?')} "
                   f"on {e.get('target', '-')} (workspace {e.get('workspace', '-')}, "
                   f"eventId {e.get('eventId', '?')})")  # fmt: skip
    line = events[-1]["_raw"]
    click.echo(f"                   last line: {line[:110]}{'...' if len(line) > 110 else ''}")
