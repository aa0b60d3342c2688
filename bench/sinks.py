"""Sinks — recordings into S3, rows into ClickHouse, hang-up to visible — each beside a raw
baseline measured in the same run.

    python bench/sinks.py [--stack test|dev] [--objects 100] [--calls 20] [--call-s 60]
                          [--ch-calls 5000] [--e2e-calls 50] [--e2e-call-s 10] [--no-e2e]

Stack: the dev stack by default (`callvault dev up`, load_settings()), as bench/seal.py;
``--stack test`` uses the test stack (tests.conftest.load_test_settings: Kafka TLS and SeaweedFS
S3) when it is up. Every run writes under its own ``s3.key_prefix`` (``bench-<hex>/``) and deletes
what it wrote at the end; the end-to-end leg also gets its own topic prefix, home, chDB directory
and web port (topics are left behind, as bench/seal.py leaves them).

1. Recordings into S3, in this process, one request at a time (the worker's finisher finishes
   calls one after the other):
   a. N bodies of a 60 s call's encrypted MP3 (64 kbit/s -> 480 kB + segment tags):
      - raw: boto3 ``put_object`` on a client with the store's configuration
        (sinks.objects.store.s3_client), on the calling thread — the ceiling;
      - ``ObjectStore.put``: + Content-MD5, worker-thread hop, error mapping;
      - ``ObjectStore.upload_file`` from a local file: what the archiver does — multipart
        (create, one part with Content-MD5, complete under ``If-None-Match: *``: 3 requests).
   b. The full finish path, ``Archiver.finish`` per call, for N calls of ``--call-s`` seconds
      with two legs of G.711 (1 s chunks of 8000 bytes; a tone plus noise, mu-law encoded),
      sealed as the worker seals them (envelope.seal under the call key, SealedAudioChunk Avro)
      and staged with ``Staging.stage`` ``--chunks-per-object`` records per staged object (2 =
      one object per second of call, as live calls reach the stager batch by batch) plus the
      ENDED marker (``Staging.mark_ended``, with per-leg chunk counts). Staging is not timed.
      Timed: list + scan (download, decode) + download again, decrypt, MP3 encode, segmented
      encrypt into a temp file, fsync, multipart upload, manifest put, staged objects deleted.
      Keys: a small in-memory ``CallKeys`` (key_for / call_key from a dict) stands in for the
      worker's KMS-backed key ring — key look-ups cost nothing here, as with a warm key cache.
      Also shown: the same decrypt + MP3 + encrypt in memory (no S3): the CPU share.
2. Rows into ClickHouse (embedded chDB, one data path per process): N calls' SealedCallEvents
   (3 per call) in batches of ``worker.batch_max`` records:
   - raw: clickhouse-connect ``client.insert`` of the same rows, already built, same column
     lists, one insert per table per batch, on the calling thread, into a second database with
     the same schema (sinks.clickhouse.ddl.ensure_schema) — the ceiling;
   - ``CallsSink.add`` + ``flush``: row building, deduplication token, the ClickHouse thread.
   Both legs run twice, alternating; the better run of each is shown.
3. End to end through a real worker process (``callvault worker run``, ``recordings.poll_s``
   set by ``--poll-s``, 0.2 s by default): ``--e2e-calls`` calls with ``--e2e-call-s`` s of audio
   on both legs. STARTED/ANSWERED and all audio are published first and the worker is let catch
   up (audio sealed and staged); then every call's ENDED (with ``audio_chunks``) is published at
   once — a burst of simultaneous hang-ups, the worst case for the sequential finisher. Latency
   per call from its ENDED send to (a) its ``manifest.json`` listed in S3 and (b) its ``calls``
   row with state ENDED answered by the worker's /analytics/query (workspace-scoped). Both are
   polled every 50 ms (a listing / a query per poll), which bounds the resolution.

Figures are noisy on a shared machine (Kafka, SeaweedFS, the worker and this process share the
cores): compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callvault.analytics_client import AnalyticsQueryError, query
from callvault.control.workspaces import WorkspaceDirectory, WorkspacePolicy
from callvault.crypto.envelope import Aad, seal, unseal
from callvault.crypto.segmented import Encryptor
from callvault.kafka_client import kafka_options
from callvault.settings import Settings, load_settings
from callvault.simulate import publish_records, simulated_calls
from callvault.topics import Topics, ensure_topics
from callvault.worker_process import WorkerProcess, wait_caught_up
from schemas.codec import get_codec
from sinks.clickhouse.calls import CallsSink
from sinks.clickhouse.client import ClickHouse
from sinks.clickhouse.ddl import ensure_schema
from sinks.objects import layout
from sinks.objects.store import ObjectStore, s3_client
from sinks.recordings.archive import Archiver
from sinks.recordings.recording import RecordingBuilder
from sinks.recordings.staging import EndedCall, Staging
from streams.app import app_id
from streams.governance import CallKey
from streams.metadata import seal_call_event

CHUNK = 8000  # bytes of one 1 s G.711 chunk
MP3_BYTES_PER_S = 64_000 // 8  # 64 kbit/s
MB = 1e6
WS = "bench"
LEGS = ("CALLER", "AGENT")


# -- settings


def base_settings(stack: str) -> Settings:
    if stack == "dev":
        return load_settings()
    from tests.conftest import load_test_settings  # the shared test stack's ports and CA

    return load_test_settings()


def with_key_prefix(settings: Settings) -> Settings:
    prefix = f"bench-{uuid.uuid4().hex[:10]}/"
    return settings.model_copy(update={"s3": settings.s3.model_copy(update={"key_prefix": prefix})})


def isolated(base: Settings, tmp: Path, poll_s: float) -> Settings:
    """Own topic prefix, home, chDB directory, web port and key prefix (tests/streams style)."""
    from tests.ports import free_port

    tag = uuid.uuid4().hex[:8]
    return with_key_prefix(base).model_copy(
        update={
            "home": tmp / "home",
            "kafka": base.kafka.model_copy(
                update={"topic_prefix": f"bs{tag}.", "ca_file": base.kafka_ca_file}
            ),
            "clickhouse": base.clickhouse.model_copy(
                update={"dsn": SecretStr(f"chdb://{tmp / 'chdb'}")}
            ),
            "worker": base.worker.model_copy(update={"web_port": free_port()}),
            "recordings": base.recordings.model_copy(update={"poll_s": poll_s}),
            "log_level": "WARNING",
        }
    )


# -- audio


def pcmu(samples: np.ndarray) -> bytes:
    """int16 PCM -> G.711 mu-law bytes (ITU-T G.711, the usual bias/segment algorithm)."""
    x = samples.astype(np.int32)
    sign = (x < 0).astype(np.int32) << 7
    mag = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def leg_audio(seconds: int, freq: float, seed: int) -> list[bytes]:
    """``seconds`` 1 s PCMU chunks of a tone plus noise (voice-like load for the encoder)."""
    rng = np.random.default_rng(seed)
    t = np.arange(seconds * CHUNK) / CHUNK
    pcm = 6000 * np.sin(2 * math.pi * freq * t) + rng.normal(0, 800, t.size)
    data = pcmu(np.clip(pcm, -32768, 32767).astype(np.int16))
    return [data[i * CHUNK : (i + 1) * CHUNK] for i in range(seconds)]


class MemoryKeys:
    """The archiver's ``CallKeys`` from a dict: the bench's stand-in for the worker's key ring."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}

    def call(self, call_id: str) -> tuple[str, bytes]:
        key_id = f"ck-{call_id}"
        return key_id, self.keys.setdefault(key_id, os.urandom(32))

    async def key_for(self, key_id: str, *, workspace_id: str, call_id: str) -> bytes:
        return self.keys[key_id]

    async def call_key(
        self, workspace_id: str, call_id: str, call_started_at: datetime | None
    ) -> tuple[str, bytes]:
        return self.call(call_id)


def sealed_chunks(
    call_id: str, started: datetime, seconds: int, keys: MemoryKeys, region: str
) -> list[bytes]:
    """One call's SealedAudioChunk records (Avro), legs interleaved as on ``sealed.audio``."""
    codec = get_codec()
    key_id, key = keys.call(call_id)
    aad = Aad(WS, call_id, "audio", region)
    audio = {leg: leg_audio(seconds, 220.0 + 90 * i, seed=i) for i, leg in enumerate(LEGS)}
    out = []
    for seq in range(seconds):
        for leg in LEGS:
            payload = audio[leg][seq]
            out.append(codec.encode("SealedAudioChunk", {
                "call_id": call_id, "workspace_id": WS, "region": region,
                "expires_at": started + timedelta(days=30), "leg": leg, "seq": seq,
                "first_rtp_seq": seq * 50 % 65536, "rtp_timestamp": seq * CHUNK,
                "captured_at": started + timedelta(seconds=seq), "codec": "PCMU",
                "sample_rate": 8000, "payload_bytes": len(payload), "missing_packets": 0,
                "ciphertext": seal(key, key_id, payload, aad), "sealed_at": started,
                "policy_version": 1,
            }))  # fmt: skip
    return out


def build_in_memory(records: Sequence[bytes], call_id: str, keys: MemoryKeys, region: str) -> int:
    """The archiver's ``_build`` without S3 or a file: decrypt, MP3 encode, segmented encrypt."""
    codec = get_codec()
    key_id, key = keys.call(call_id)
    builder = RecordingBuilder()
    enc = Encryptor(key, key_id, Aad(WS, call_id, "recording", region))
    size = 0
    for raw in records:
        rec = codec.decode("SealedAudioChunk", raw)
        rec["payload"] = unseal(
            keys.keys.__getitem__, rec["ciphertext"], Aad(WS, call_id, "audio", rec["region"])
        )
        builder.add(rec)
        size += len(enc.update(builder.take_mp3()))
    size += len(enc.update(builder.finish()))
    return size + len(enc.finalize())


# -- 1. recordings into S3


async def s3_objects(settings: Settings, n: int, size: int, tmp: Path) -> dict[str, float]:
    """Objects/s of ``n`` bodies of ``size`` bytes: raw put_object, ObjectStore.put, upload_file."""
    store = ObjectStore(settings)
    raw = s3_client(settings)
    body = os.urandom(size)
    path = tmp / "body.bin"
    path.write_bytes(body)
    ns = settings.s3.key_prefix
    meta = {"cv-workspace": WS, "cv-call": "c"}
    res: dict[str, float] = {}
    try:
        for i in range(3):  # warm-up: connections, thread pool
            raw.put_object(Bucket=store.bucket, Key=f"{ns}warm/{i}", Body=body)
            await store.put(f"warm/p{i}", body)
        t0 = time.perf_counter()
        for i in range(n):
            raw.put_object(
                Bucket=store.bucket, Key=f"{ns}raw/{i}", Body=body, Metadata=meta,
                ContentType="application/octet-stream",
            )  # fmt: skip
        res["raw_put"] = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for i in range(n):
            await store.put(f"put/{i}", body, metadata=meta)
        res["store_put"] = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for i in range(n):
            await store.upload_file(
                f"upload/{i}", path, metadata=meta, content_type="application/octet-stream"
            )
        res["upload_file"] = n / (time.perf_counter() - t0)
    finally:
        raw.close()
        store.close()
    return res


async def finish_path(
    settings: Settings, n_calls: int, seconds: int, per_object: int, tmp: Path
) -> dict[str, float]:
    """Calls/s of Archiver.finish over ``n_calls`` staged calls, and the in-memory build."""
    store = ObjectStore(settings)
    keys = MemoryKeys()
    staging = Staging(store)
    archiver = Archiver(store, keys, tmp_dir=tmp / "recordings-tmp")
    region = settings.region
    now = datetime.now(UTC)
    started = now - timedelta(seconds=seconds + 5)
    expires = started + timedelta(days=30)
    calls = [f"call-{i:04d}-{uuid.uuid4().hex[:6]}" for i in range(n_calls)]
    records = {c: sealed_chunks(c, started, seconds, keys, region) for c in calls}

    t0 = time.perf_counter()
    cpu_calls = min(3, n_calls)
    for c in calls[:cpu_calls]:
        build_in_memory(records[c], c, keys, region)
    cpu_per_s = cpu_calls / (time.perf_counter() - t0)

    sem = asyncio.Semaphore(16)

    async def stage(c: str, i: int, values: list[bytes]) -> None:
        async with sem:
            await staging.stage(WS, c, "audio", 0, i, values, expires)

    jobs = []
    for c in calls:
        recs = records[c]
        jobs += [stage(c, i, recs[i : i + per_object]) for i in range(0, len(recs), per_object)]
    await asyncio.gather(*jobs)
    for c in calls:
        await staging.mark_ended(EndedCall(
            workspace_id=WS, call_id=c, region=region, call_started_at=started,
            ended_at=started + timedelta(seconds=seconds), duration_ms=seconds * 1000,
            expires_at=expires, audio_chunks=dict.fromkeys(LEGS, seconds), staged_at=now,
        ))  # fmt: skip

    sizes = []
    t0 = time.perf_counter()
    for c in calls:
        outcome = await archiver.finish(WS, c, now=datetime.now(UTC))
        if outcome.status != "finished" or outcome.manifest is None:
            raise RuntimeError(f"Archiver.finish({c}) -> {outcome.status}, expected finished")
        sizes.append(outcome.manifest["artifacts"]["recording"]["size"])
    elapsed = time.perf_counter() - t0
    store.close()
    return {
        "finish": n_calls / elapsed,
        "cpu_build": cpu_per_s,
        "recording_bytes": statistics.mean(sizes),
        "objects_per_call": -(-2 * seconds // per_object),
    }


# -- 2. rows into ClickHouse


async def clickhouse_rows(tmp: Path, n_calls: int, batch: int) -> dict[str, float]:
    policy = WorkspacePolicy(WS, WS, "eu", retention_days=30)
    key = CallKey("ck-bench", bytes(32))
    recs = [
        seal_call_event(ev, policy, pepper=b"pepper", key=key)
        for call in simulated_calls(WS, n_calls, seed=3)
        for ev in call.events
    ]
    batches = [recs[i : i + batch] for i in range(0, len(recs), batch)]
    dsn = f"chdb://{tmp / 'chdb'}"
    sink_ch = ClickHouse(dsn, "bench_sink")
    raw_ch = ClickHouse(dsn, "bench_raw")
    await ensure_schema(sink_ch)
    await ensure_schema(raw_ch)
    # the raw leg's rows, built beforehand by the sink's own row mapping
    shaper = CallsSink(raw_ch, "eu")
    raw_batches = []
    for b in batches:
        tables: dict[str, list[list[Any]]] = {t: [] for t in CallsSink.TABLES}
        for rec in b:
            for table, rows in shaper.rows(rec).items():
                tables[table] += rows
        raw_batches.append(tables)
    n_rows = sum(len(rows) for tables in raw_batches for rows in tables.values())
    client = await raw_ch.run(lambda c: c)  # the opened clickhouse-connect client itself
    sink = CallsSink(sink_ch, "eu")

    def raw_leg() -> float:
        t0 = time.perf_counter()
        for tables in raw_batches:
            for table, columns in CallsSink.TABLES.items():
                if tables[table]:
                    client.insert(f"bench_raw.{table}", tables[table], column_names=list(columns))
        return time.perf_counter() - t0

    async def sink_leg() -> float:
        t0 = time.perf_counter()
        for b in batches:
            for rec in b:
                sink.add(rec)
            await sink.flush()
        return time.perf_counter() - t0

    raw_t, sink_t = [], []
    for _ in range(2):
        # chDB allows one engine per process; both handles share it, drive it from its thread
        raw_t.append(await raw_ch.run(lambda _c: raw_leg()))
        sink_t.append(await sink_leg())
    _, counted = await sink_ch.query("SELECT count() FROM bench_sink.calls FINAL")
    if counted[0][0] != n_calls:
        raise RuntimeError(f"bench_sink.calls FINAL holds {counted[0][0]} calls, not {n_calls}")
    await sink_ch.close()
    await raw_ch.close()
    return {
        "records": len(recs), "rows": n_rows, "batches": len(batches),
        "raw": len(recs) / min(raw_t), "sink": len(recs) / min(sink_t),
    }  # fmt: skip


# -- 3. end to end


def e2e_calls(n: int, seconds: int) -> list[dict[str, Any]]:
    """Calls that started ``seconds`` + 2 s ago: their three events and their audio chunks."""
    now = datetime.now(UTC)
    out = []
    for i, call in enumerate(simulated_calls(WS, n, seed=99)):
        started = now - timedelta(seconds=seconds + 2)
        answered = started + timedelta(seconds=1)
        events = []
        for ev in call.events:
            ev = {**ev, "call_started_at": started, "audio_chunks": None}
            if ev["kind"] == "STARTED":
                ev["occurred_at"] = started
            else:
                ev |= {"answered_at": answered, "occurred_at": answered}
            events.append(ev)
        chunks = []
        audio = {leg: leg_audio(seconds, 220.0 + 90 * j, seed=i * 2 + j)
                 for j, leg in enumerate(LEGS)}  # fmt: skip
        for seq in range(seconds):
            for leg in LEGS:
                chunks.append({
                    "call_id": call.call_id, "workspace_id": WS, "leg": leg, "seq": seq,
                    "first_rtp_seq": seq * 50, "rtp_timestamp": seq * CHUNK,
                    "captured_at": answered + timedelta(seconds=seq), "codec": "PCMU",
                    "sample_rate": 8000, "payload": audio[leg][seq], "missing_packets": 0,
                    "call_started_at": started, "agent_id": "agent-1", "suppressed": False,
                })  # fmt: skip
        out.append({"call_id": call.call_id, "started": started, "events": events,
                    "chunks": chunks})  # fmt: skip
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


async def end_to_end(
    base: Settings, tmp: Path, n: int, seconds: int, poll_s: float, timeout_s: float
) -> dict[str, Any]:
    settings = isolated(base, tmp / "e2e", poll_s)
    await ensure_topics(settings)
    async with WorkspaceDirectory(settings) as d:
        await d.create(WS, region=settings.region, retention_days=30)
    calls = e2e_calls(n, seconds)
    await publish_records(
        settings, "ingest.metadata", "CallEvent", [e for c in calls for e in c["events"][:2]]
    )
    await publish_records(
        settings, "ingest.audio", "AudioChunk", [x for c in calls for x in c["chunks"]]
    )
    t = Topics(settings)
    worker = WorkerProcess(settings, tmp / "e2e-worker.log")
    store = ObjectStore(settings)
    producer = AIOKafkaProducer(**kafka_options(settings), acks="all", enable_idempotence=True,
                                linger_ms=5)  # fmt: skip
    worker.start()
    try:
        await worker.wait_healthy()
        topics = [t.name(x) for x in ("ingest.metadata", "ingest.audio", "sealed.audio",
                                      "sealed.metadata")]  # fmt: skip
        await wait_caught_up(settings, app_id(settings), topics, timeout_s=300, worker=worker)
        await producer.start()
        codec = get_codec()
        manifests = {
            layout.manifest_key(WS, c["call_id"], c["started"]): c["call_id"] for c in calls
        }
        sent: dict[str, float] = {}
        futures = []
        for c in calls:
            ended = datetime.now(UTC)
            ev = {**c["events"][2], "call_started_at": c["started"], "occurred_at": ended,
                  "ended_at": ended, "answered_at": c["events"][1]["answered_at"],
                  "duration_ms": int((ended - c["events"][1]["answered_at"]).total_seconds()
                                     * 1000),
                  "audio_chunks": dict.fromkeys(LEGS, seconds)}  # fmt: skip
            value = codec.encode("CallEvent", ev)
            sent[c["call_id"]] = time.monotonic()
            futures.append(await producer.send(t.ingest_metadata, key=c["call_id"].encode(),
                                               value=value))  # fmt: skip
        await asyncio.gather(*futures)
        t_sent = time.monotonic()
        s3_seen: dict[str, float] = {}
        ch_seen: dict[str, float] = {}
        errors: list[str] = []

        async def poll_s3() -> None:
            while len(s3_seen) < n and time.monotonic() - t_sent < timeout_s:
                for o in await store.list_objects(layout.workspace_prefix(WS)):
                    if o.key in manifests:
                        s3_seen.setdefault(manifests[o.key], time.monotonic())
                await asyncio.sleep(0.05)

        async def poll_ch() -> None:
            sql = (f"SELECT call_id FROM {settings.clickhouse.database}.calls FINAL "
                   "WHERE state = 'ENDED'")  # fmt: skip
            while len(ch_seen) < n and time.monotonic() - t_sent < timeout_s:
                try:
                    res = await asyncio.to_thread(query, settings, sql, workspace=WS)
                except AnalyticsQueryError as exc:
                    if str(exc) not in errors:
                        errors.append(str(exc))
                else:
                    for (call_id,) in res.rows:
                        ch_seen.setdefault(call_id, time.monotonic())
                await asyncio.sleep(0.05)

        await asyncio.gather(poll_s3(), poll_ch())
        if worker.proc is not None and worker.proc.poll() is not None:
            errors.append(f"worker exited: {worker.log_tail()}")
        return {
            "n": n, "seconds": seconds, "poll_s": poll_s, "send_span": t_sent - min(sent.values()),
            "s3": [s3_seen[c] - sent[c] for c in s3_seen],
            "ch": [ch_seen[c] - sent[c] for c in ch_seen],
            "errors": errors, "log": str(worker.log_path),
            "log_tail": worker.log_tail(15) if len(s3_seen) < n or len(ch_seen) < n else "",
        }  # fmt: skip
    finally:
        await producer.stop()
        worker.stop()
        try:
            await store.delete_prefix("")
        finally:
            store.close()


# -- report


def row(name: str, value: float, unit: str, ratio: float | None = None, note: str = "") -> None:
    ratio_s = f"{ratio:6.2f}x" if ratio is not None else " " * 7
    print(f"  {name:<54} {value:>10,.1f} {unit:<10} {ratio_s}  {note}")


def report(res: dict[str, Any], args: argparse.Namespace) -> None:
    o, size = res["objects"], res["object_bytes"]
    print(f"\n1a. S3 writes, one at a time — {args.objects} objects of {size / 1000:,.0f} kB "
          "(a 60 s call's encrypted MP3)")  # fmt: skip
    print(f"  {'':<54} {'objects/s':>10} {'':<10} {'vs raw':>7}  MB/s")
    for key, name in (
        ("raw_put", "raw boto3 put_object (store's client config)"),
        ("store_put", "ObjectStore.put (+ Content-MD5, thread hop)"),
        ("upload_file", "ObjectStore.upload_file (multipart, If-None-Match)"),
    ):
        row(name, o[key], "objects/s", o[key] / o["raw_put"], f"{o[key] * size / MB:,.1f} MB/s")

    f = res["finish"]
    audio_s = args.call_s
    print(f"\n1b. Archiver.finish — {args.calls} calls of {audio_s} s, 2 legs of G.711, "
          f"{f['objects_per_call']:.0f} staged objects per call, recording "
          f"{f['recording_bytes'] / 1000:,.0f} kB")  # fmt: skip
    print(f"  {'':<54} {'calls/s':>10} {'':<10} {'vs raw':>7}  audio-s/s")
    raw_same = o["raw_put"] * size / f["recording_bytes"]  # raw put rate scaled to this size
    row("raw boto3 put_object of a recording-sized body", raw_same, "calls/s", 1.0,
        f"{raw_same * audio_s:,.0f}")  # fmt: skip
    row("Archiver.finish (scan, decrypt, MP3, encrypt, upload)", f["finish"], "calls/s",
        f["finish"] / raw_same, f"{f['finish'] * audio_s:,.0f}; "
        f"{f['finish'] * f['recording_bytes'] / MB:,.2f} MB/s out")  # fmt: skip
    w = res["finish_whole"]
    row("  the same, each call staged as 1 object", w["finish"], "calls/s",
        w["finish"] / raw_same, f"{w['finish'] * audio_s:,.0f}")  # fmt: skip
    row("  CPU only: decrypt + MP3 + encrypt in memory", f["cpu_build"], "calls/s",
        f["cpu_build"] / raw_same, f"{f['cpu_build'] * audio_s:,.0f}")  # fmt: skip

    c = res["clickhouse"]
    per = c["rows"] / c["records"]
    print(f"\n2. ClickHouse (chDB) — {c['records']:,} SealedCallEvents = {c['rows']:,} rows in 3 "
          f"tables, {c['batches']} batches of <= {args.batch}")  # fmt: skip
    print(f"  {'':<54} {'events/s':>10} {'':<10} {'vs raw':>7}  rows/s")
    row("raw clickhouse-connect client.insert (rows prebuilt)", c["raw"], "events/s", 1.0,
        f"{c['raw'] * per:,.0f}")  # fmt: skip
    row("CallsSink.add + flush", c["sink"], "events/s", c["sink"] / c["raw"],
        f"{c['sink'] * per:,.0f}")  # fmt: skip

    e = res.get("e2e")
    if e is None:
        return
    print(f"\n3. Hang-up to visible — {e['n']} calls ending at once, {e['seconds']} s of audio "
          f"per leg, recordings.poll_s={e['poll_s']}, ENDED sends spanned "
          f"{e['send_span'] * 1000:.0f} ms")  # fmt: skip
    print(f"  {'':<54} {'seen':>10} {'p50 s':>10} {'p99 s':>7}  max s")
    for key, name in (("s3", "recording: manifest.json listed in S3"),
                      ("ch", "analytics: calls row state=ENDED via /analytics/query")):  # fmt: skip
        lat = e[key]
        if lat:
            print(f"  {name:<54} {len(lat):>4}/{e['n']:<5} {pct(lat, 50):>10.2f} "
                  f"{pct(lat, 99):>7.2f}  {max(lat):.2f}")  # fmt: skip
        else:
            print(f"  {name:<54} {0:>4}/{e['n']:<5} {'-':>10} {'-':>7}  -")
    for err in e["errors"]:
        print(f"  error: {err}")
    if e["log_tail"]:
        print(f"  worker log ({e['log']}), tail:\n{e['log_tail']}")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base = base_settings(args.stack)
    res: dict[str, Any] = {"load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="cv-bench-sinks-") as tmpdir:
        tmp = Path(tmpdir)
        s3_settings = with_key_prefix(base)
        cleanup = ObjectStore(s3_settings)
        try:
            f = await finish_path(s3_settings, args.calls, args.call_s, args.chunks_per_object,
                                  tmp)  # fmt: skip
            res["finish"] = f
            whole = await finish_path(s3_settings, args.calls, args.call_s, 2 * args.call_s, tmp)
            res["finish_whole"] = whole
            res["object_bytes"] = round(f["recording_bytes"] * 60 / args.call_s)
            res["objects"] = await s3_objects(s3_settings, args.objects, res["object_bytes"], tmp)
        finally:
            await cleanup.delete_prefix("")
            cleanup.close()
        res["clickhouse"] = await clickhouse_rows(tmp, args.ch_calls, args.batch)
        if not args.no_e2e:
            try:
                res["e2e"] = await end_to_end(base, tmp, args.e2e_calls, args.e2e_call_s,
                                              args.poll_s, args.timeout)  # fmt: skip
            except Exception as exc:  # report parts 1 and 2 anyway
                res["e2e_error"] = f"{type(exc).__name__}: {exc}"
    res["load_after"] = os.getloadavg()[0]
    return res


def summary(res: dict[str, Any]) -> dict[str, Any]:
    o, f, c = res["objects"], res["finish"], res["clickhouse"]
    raw_same = o["raw_put"] * res["object_bytes"] / f["recording_bytes"]
    out: dict[str, Any] = {
        "bench": "sinks", "object_bytes": res["object_bytes"],
        **{f"s3_{k}_per_s": round(v, 1) for k, v in o.items()},
        "finish_calls_per_s": round(f["finish"], 2),
        "finish_ratio": round(f["finish"] / raw_same, 3),
        "finish_whole_calls_per_s": round(res["finish_whole"]["finish"], 2),
        "cpu_build_calls_per_s": round(f["cpu_build"], 2),
        "ch_raw_events_per_s": round(c["raw"]), "ch_sink_events_per_s": round(c["sink"]),
        "ch_ratio": round(c["sink"] / c["raw"], 3),
    }  # fmt: skip
    if "e2e" in res:
        e = res["e2e"]
        for key in ("s3", "ch"):
            out[f"e2e_{key}_seen"] = len(e[key])
            if e[key]:
                out[f"e2e_{key}_p50_s"] = round(pct(e[key], 50), 3)
                out[f"e2e_{key}_p99_s"] = round(pct(e[key], 99), 3)
    if "e2e_error" in res:
        out["e2e_error"] = res["e2e_error"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--stack", choices=("test", "dev"), default="dev")
    parser.add_argument("--objects", type=int, default=100, help="S3 objects per 1a line")
    parser.add_argument("--calls", type=int, default=20, help="calls finished in 1b")
    parser.add_argument("--call-s", type=int, default=60, help="seconds of audio per call in 1b")
    parser.add_argument("--chunks-per-object", type=int, default=2,
                        help="sealed chunks per staged object in 1b")  # fmt: skip
    parser.add_argument("--ch-calls", type=int, default=5000, help="calls (x3 events) in 2")
    parser.add_argument("--batch", type=int, default=500, help="records per flush in 2")
    parser.add_argument("--e2e-calls", type=int, default=50)
    parser.add_argument("--e2e-call-s", type=int, default=10, help="seconds of audio per leg")
    parser.add_argument("--poll-s", type=float, default=0.2, help="recordings.poll_s in 3")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait in 3")
    parser.add_argument("--no-e2e", action="store_true", help="skip part 3")
    args = parser.parse_args()
    t0 = time.perf_counter()
    res = asyncio.run(run(args))
    report(res, args)
    if "e2e_error" in res:
        print(f"\n3. Hang-up to visible: FAILED — {res['e2e_error']}")
    print(
        f"\nCaveat: shared cores (1-min load {res['load_before']:.1f} before, "
        f"{res['load_after']:.1f} after); compare ratios within one run."
    )
    print(f"(run took {time.perf_counter() - t0:.0f} s)")
    print(json.dumps(summary(res)))


if __name__ == "__main__":
    main()
