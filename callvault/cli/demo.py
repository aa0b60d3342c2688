"""``callvault demo``: a real SIP call through the whole pipeline, ending with where it landed.

Stack up -> topics -> workspace -> trunk credential -> stream worker + SIP ingest node ->
``callvault call`` places a call with digest auth and streams a tone as RTP -> the node
publishes metadata and audio -> the worker seals the metadata and writes ClickHouse rows.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

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

    settings = get_settings(ctx)
    _say("starting the local stack (Kafka, SeaweedFS; chDB is embedded in the worker)")
    for service in stack.up(settings):
        click.echo(f"    {service.name:<10} {service.state:<16} {service.endpoint}", err=True)
    _say("ensuring topics")
    run(ensure_topics(settings))
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
        audio = run(
            _sealed_audio(settings, [r[0] for r in rows.rows], int(seconds * 1000) // 20 * 160)
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
        click.echo(f"  analytics rows   {settings.clickhouse_dsn.split('@')[-1]} "
                   f"tables {settings.clickhouse.database}.calls and .call_events")  # fmt: skip
        click.echo(f"  audit events     topic {topics.audit_events} (trunk credential issued)")
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
        "intDiv(duration_ms, 1000) AS secs, end_reason, toDate(expires_at) AS expires"
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
