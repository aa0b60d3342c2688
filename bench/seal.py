"""Sealing throughput — MB/s for 1 s audio chunks, events/s for metadata — each beside its ceiling
measured in the same run.

    python bench/seal.py [--events 15000] [--chunks 3000] [--seconds 1]

Needs the dev stack (`callvault dev up`; any other broker through CALLVAULT_KAFKA__BOOTSTRAP).
Every stack leg runs on its own topic prefix, workspace and home, created for the run.

Cipher, in this process on one core, 8000-byte plaintexts (one 1 s G.711 chunk):
- ceiling: `openssl speed -evp aes-256-gcm` (the system OpenSSL);
- cryptography's AESGCM.encrypt (its bundled OpenSSL), one key object, no framing;
- callvault.crypto.envelope.seal: new key object, random nonce, header, AAD;
- streams.governance.seal_audio_chunk, then the same with Avro decode + encode around it.
Metadata, in process: seal_call_event, then with Avro decode + encode; and the key ring creating
call keys one after the other as the sealer does (a durable control.keys write per new call).

Through the stack, N records already in Kafka, ceiling = bench/metadata_slice.py's raw aiokafka
pass-through (consume -> produce acks=all -> commit, 500-record batches, no decoding):
- metadata: pass-through, faust pass-through (bench/faust_passthrough.py), real worker sealing;
- audio: pass-through of the same AudioChunk records, real worker sealing.
Two rates per leg. "wall": N / seconds from the consumer's start (pass-through: first poll;
worker: healthy) until the N-th output record is durable (the worker: sealed.* end offsets —
sealing only, though the worker's analytics agent shares its process); the worker's consumer
group catching up, ClickHouse included for metadata, is shown as a second line. "steady":
(N - 1) / span of the output records' timestamps, which leaves out start-up and group joins.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import cycle
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from cryptography.hazmat.backends.openssl import backend as crypto_backend
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.metadata_slice import baseline, isolated, prepare
from callvault.control.keys import open_keyring
from callvault.control.workspaces import WorkspacePolicy
from callvault.crypto.envelope import Aad, seal
from callvault.kafka_client import kafka_options
from callvault.settings import Settings, load_settings
from callvault.simulate import publish_records, simulated_calls
from callvault.topics import Topics, topic_partitions
from callvault.worker_process import WorkerProcess, WorkerProcessError, wait_caught_up
from schemas.codec import get_codec
from streams.app import app_id
from streams.governance import CallKey, seal_audio_chunk
from streams.metadata import seal_call_event

CHUNK = 8000  # bytes of one 1 s G.711 chunk (8000 samples, one byte each)
CHUNKS_PER_CALL = 60  # 30 s, two legs
EVENTS_PER_CALL = 3  # STARTED, ANSWERED, ENDED
GOAL = 0.5  # sealed metadata events/s as a share of the raw pass-through
MB = 1e6


# -- in process


def openssl_mb_s(seconds: int) -> tuple[float, str]:
    """`openssl speed` on 8000-byte blocks: (MB/s, version)."""
    out = subprocess.run(
        ["openssl", "speed", "-evp", "aes-256-gcm", "-seconds", str(seconds), "-bytes", str(CHUNK)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    # "The 'numbers' are in 1000s of bytes per second processed." then "AES-256-GCM  3353032.00k"
    match = re.search(r"^AES-256-GCM\s+([\d.]+)k\s*$", out, re.MULTILINE | re.IGNORECASE)
    if match is None:
        raise RuntimeError(f"unexpected `openssl speed` output:\n{out}")
    version = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout
    return float(match.group(1)) * 1000 / MB, " ".join(version.split()[:2])


def per_second(fn: Callable[[Any], object], items: Sequence[Any], seconds: float) -> float:
    """Calls of ``fn`` per second, cycling over ``items``, for about ``seconds``."""
    it = cycle(items)
    calls, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        for _ in range(64):
            fn(next(it))
        calls += 64
    return calls / elapsed


def audio_chunks(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` AudioChunks as an ingest node publishes them: 1 s of G.711 per leg of 30 s calls."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for call in simulated_calls("bench", -(-n // CHUNKS_PER_CALL), seed=seed):
        started = call.events[0]["call_started_at"]
        for i in range(CHUNKS_PER_CALL):
            seq, leg = divmod(i, 2)
            out.append({
                "call_id": call.call_id, "workspace_id": "bench",
                "leg": ("CALLER", "AGENT")[leg], "seq": seq,
                "first_rtp_seq": seq * 50 % 65536, "rtp_timestamp": seq * CHUNK,
                "captured_at": started + timedelta(seconds=seq), "codec": "PCMU",
                "sample_rate": 8000, "payload": rng.randbytes(CHUNK), "missing_packets": 0,
                "call_started_at": started, "agent_id": "agent-1", "suppressed": False,
            })  # fmt: skip
    return out[:n]


def cipher_rates(chunks: list[dict[str, Any]], seconds: float) -> dict[str, float]:
    """Records/s of each in-process audio step on the same chunks."""
    policy = WorkspacePolicy("bench", "bench", region="eu")
    key = CallKey("ck-bench", os.urandom(32))
    now = datetime.now(UTC)
    codec = get_codec()
    aead, nonce, aad = AESGCM(key.key), os.urandom(12), Aad("bench", "c", "audio", "eu")
    assoc = aad.encode()  # comparable associated data; nonce reuse is harmless here (discarded)
    encoded = [codec.encode("AudioChunk", c) for c in chunks[:200]]

    def record_path(raw: bytes) -> bytes:
        chunk = codec.decode("AudioChunk", raw)
        return codec.encode("SealedAudioChunk", seal_audio_chunk(chunk, policy, key, now=now))

    payloads = [c["payload"] for c in chunks[:200]]
    return {
        "aesgcm": per_second(lambda p: aead.encrypt(nonce, p, assoc), payloads, seconds),
        "envelope": per_second(lambda p: seal(key.key, key.key_id, p, aad), payloads, seconds),
        "seal_audio_chunk": per_second(
            lambda c: seal_audio_chunk(c, policy, key, now=now), chunks[:200], seconds
        ),
        "audio_record_path": per_second(record_path, encoded, seconds),
    }


def metadata_rates(events: list[dict[str, Any]], seconds: float) -> dict[str, float]:
    policy = WorkspacePolicy("bench", "bench", region="eu")
    key = CallKey("ck-bench", os.urandom(32))
    pepper = b"bench-pepper"
    codec = get_codec()
    encoded = [codec.encode("CallEvent", e) for e in events]

    def record_path(raw: bytes) -> bytes:
        sealed = seal_call_event(codec.decode("CallEvent", raw), policy, pepper=pepper, key=key)
        return codec.encode("SealedCallEvent", sealed)

    return {
        "seal_call_event": per_second(
            lambda e: seal_call_event(e, policy, pepper=pepper, key=key), events, seconds
        ),
        "metadata_record_path": per_second(record_path, encoded, seconds),
    }


async def new_call_keys_per_s(settings: Settings, n: int) -> float:
    """New call keys/s created one after the other, as the sealer meets new calls."""
    await prepare(settings, 0)
    async with open_keyring(settings) as ring:
        await ring.call_key("bench", "warm-up")  # the workspace key
        t0 = time.perf_counter()
        for i in range(n):
            await ring.call_key("bench", f"call-{i}")
        return n / (time.perf_counter() - t0)


# -- through the stack


async def durable_in(settings: Settings, topic: str, n: int, worker: WorkerProcess) -> None:
    """Return once ``topic`` holds ``n`` records (end offsets: written with acks=all)."""
    consumer = AIOKafkaConsumer(**kafka_options(settings), group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in await topic_partitions(consumer, topic)]
        deadline = time.monotonic() + 900
        # polled at 20 ms on purpose: this loop is the measurement
        while sum((await consumer.end_offsets(tps)).values()) < n:
            if worker.proc is not None and worker.proc.poll() is not None:
                raise WorkerProcessError(f"worker died:\n{worker.log_tail()}")
            if time.monotonic() > deadline:
                raise WorkerProcessError(f"{topic} short of {n} records:\n{worker.log_tail()}")
            await asyncio.sleep(0.02)
    finally:
        await consumer.stop()


async def stream_run(
    settings: Settings, log: Path, out: str, n: int, group_topics: list[str], argv: list[str] | None
) -> tuple[float, float]:
    """A worker process (the real one unless ``argv``): seconds from healthy until ``n`` records
    are durable in ``out``, and until its group has committed everything in ``group_topics``."""
    worker = WorkerProcess(settings, log, argv)
    worker.start()
    try:
        await worker.wait_healthy()
        t0 = time.perf_counter()
        await durable_in(settings, out, n, worker)
        t_out = time.perf_counter() - t0
        await wait_caught_up(settings, app_id(settings), group_topics, timeout_s=900, worker=worker)
        return t_out, time.perf_counter() - t0
    finally:
        worker.stop()


async def steady_rate(settings: Settings, topic: str) -> float:
    """(records - 1) / seconds between the first and the last record's timestamp in ``topic``."""
    consumer = AIOKafkaConsumer(**kafka_options(settings), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        count, stamps = 0, []
        for p in await topic_partitions(consumer, topic):
            tp = TopicPartition(topic, p)
            consumer.assign([tp])
            first, end = (
                (await consumer.beginning_offsets([tp]))[tp],
                (await consumer.end_offsets([tp]))[tp],
            )
            count += end - first
            for offset in {first, end - 1} if end > first else ():
                consumer.seek(tp, offset)
                stamps.append((await consumer.getone(tp)).timestamp)
        return (count - 1) / max((max(stamps) - min(stamps)) / 1000, 1e-3)
    finally:
        await consumer.stop()


class Stack:
    """Stack legs, each on its own prefix, workspace and home under one temporary directory."""

    def __init__(self, base: Settings, tmp: Path) -> None:
        self.base, self.tmp = base, tmp

    def leg(self, name: str) -> Settings:
        return isolated(self.base, self.tmp / name)

    async def passthrough(
        self, name: str, load: Callable[[Settings], Awaitable[int]]
    ) -> dict[str, float]:
        settings = self.leg(name)
        n = await load(settings)
        wall = await baseline(settings, n)
        return {"n": n, "wall": n / wall, "steady": await steady_rate(settings, self.out(settings))}

    async def worker(
        self,
        name: str,
        load: Callable[[Settings], Awaitable[int]],
        out: str,
        group: Sequence[str],
        argv: list[str] | None = None,
    ) -> dict[str, float]:
        settings = self.leg(name)
        n = await load(settings)
        t = Topics(settings)
        t_out, t_group = await stream_run(
            settings, self.tmp / f"{name}.log", t.name(out), n, [t.name(g) for g in group], argv
        )
        steady = await steady_rate(settings, t.name(out))
        return {"n": n, "wall": n / t_out, "group": n / t_group, "steady": steady}

    @staticmethod
    def out(settings: Settings) -> str:
        return Topics(settings).sealed_metadata  # where bench/metadata_slice.py's baseline writes


# -- report


def row(name: str, value: float, unit: str, ratio: float | None = None, note: str = "") -> None:
    ratio_s = f"{ratio:6.2f}x" if ratio is not None else " " * 7
    print(f"  {name:<52} {value:>10,.0f} {unit:<9} {ratio_s}  {note}")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {"load_before": os.getloadavg()[0]}
    chunks = audio_chunks(args.chunks)
    calls = list(simulated_calls("bench", args.events // EVENTS_PER_CALL, seed=42))
    events = [e for c in calls for e in c.events]

    res["openssl_mb_s"], res["openssl"] = openssl_mb_s(max(1, round(args.seconds)))
    res["cryptography_openssl"] = crypto_backend.openssl_version_text()
    res.update(cipher_rates(chunks, args.seconds))
    res.update(metadata_rates(events[:3000], args.seconds))

    async def load_events(settings: Settings) -> int:
        return await prepare(settings, args.events // EVENTS_PER_CALL)

    async def load_chunks(settings: Settings, logical: str) -> int:
        await prepare(settings, 0)
        await publish_records(settings, logical, "AudioChunk", chunks)
        return len(chunks)

    faust_argv = [sys.executable, str(Path(__file__).with_name("faust_passthrough.py"))]
    with tempfile.TemporaryDirectory(prefix="cv-bench-seal-") as tmpdir:
        stack = Stack(load_settings(), Path(tmpdir))
        res["call_keys_per_s"] = await new_call_keys_per_s(stack.leg("keys"), 200)
        res["meta_raw"] = await stack.passthrough("meta-raw", load_events)
        if not args.no_faust:
            res["meta_faust"] = await stack.worker(
                "meta-faust", load_events, "sealed.metadata", ["ingest.metadata"], faust_argv
            )
        res["meta_sealed"] = await stack.worker(
            "meta-seal", load_events, "sealed.metadata", ["ingest.metadata", "sealed.metadata"]
        )
        # The pass-through moves bytes: ingest.metadata and ingest.audio have the same
        # partitions and configuration (callvault.topics), so the AudioChunk records go where
        # bench/metadata_slice.py's baseline reads.
        res["audio_raw"] = await stack.passthrough(
            "audio-raw", lambda s: load_chunks(s, "ingest.metadata")
        )
        res["audio_sealed"] = await stack.worker(
            "audio-seal", lambda s: load_chunks(s, "ingest.audio"), "sealed.audio", ["ingest.audio"]
        )
    res["load_after"] = os.getloadavg()[0]
    return res


def report(res: dict[str, Any], seconds: float) -> None:
    ossl = res["openssl_mb_s"]
    print(f"\nCipher — 8000-byte chunks (1 s of G.711), one core, {seconds:g} s per line")
    print(f"  {'':<52} {'MB/s':>10} {'':<9} {'vs openssl':>7}  chunks/s = concurrent legs")
    row(f"openssl speed -evp aes-256-gcm ({res['openssl']})", ossl, "MB/s", 1.0,
        f"{ossl * MB / CHUNK:,.0f}")  # fmt: skip
    for key, name in (
        ("aesgcm", f"cryptography AESGCM.encrypt ({res['cryptography_openssl']})"),
        ("envelope", "envelope seal (key object, nonce, header, AAD)"),
        ("seal_audio_chunk", "governance.seal_audio_chunk"),
        ("audio_record_path", "  + Avro decode/encode (the sealer's CPU per record)"),
    ):
        mb_s = res[key] * CHUNK / MB
        row(name, mb_s, "MB/s", mb_s / ossl, f"{res[key]:,.0f}")

    print("\nMetadata — in process")
    row("streams.metadata.seal_call_event", res["seal_call_event"], "events/s")
    row("  + Avro decode/encode (the sealer's CPU per record)", res["metadata_record_path"],
        "events/s")  # fmt: skip
    keys = res["call_keys_per_s"]
    per_call = f"= {keys * EVENTS_PER_CALL:,.0f} events/s at {EVENTS_PER_CALL} events per call"
    row("key ring: new call keys, one at a time", keys, "keys/s", None, per_call)

    raw = res["meta_raw"]
    print(f"\nMetadata through the stack — {raw['n']:,} events     wall events/s, steady events/s")
    legs = [("raw aiokafka pass-through (ceiling)", raw)]
    if "meta_faust" in res:
        legs.append(("faust pass-through (worker's config)", res["meta_faust"]))
    legs.append(("worker sealing -> sealed.metadata", res["meta_sealed"]))
    for name, leg in legs:
        row(name, leg["wall"], "wall", leg["wall"] / raw["wall"])
        row("", leg["steady"], "steady", leg["steady"] / raw["steady"])
    sealed = res["meta_sealed"]
    row("worker group caught up (incl. ClickHouse analytics)", sealed["group"], "wall",
        sealed["group"] / raw["wall"])  # fmt: skip

    araw, aseal = res["audio_raw"], res["audio_sealed"]
    print(f"\nAudio through the stack — {araw['n']:,} chunks of {CHUNK} B      chunks/s, MB/s")
    for name, leg in (("raw aiokafka pass-through (ceiling)", araw),
                      ("worker sealing -> sealed.audio", aseal)):  # fmt: skip
        for kind in ("wall", "steady"):
            row(name if kind == "wall" else "", leg[kind], f"{kind}", leg[kind] / araw[kind],
                f"{leg[kind] * CHUNK / MB:,.1f} MB/s")  # fmt: skip

    print(f"\nGoal: sealed metadata events/s >= {GOAL} x raw pass-through")
    for kind in ("wall", "steady"):
        ratio = sealed[kind] / raw[kind]
        print(f"  {kind:<6} {ratio:.2f}  {'met' if ratio >= GOAL else 'NOT met'}")
    print(
        f"\nCaveat: 2 cores shared by Kafka, the worker, this process and whatever else runs "
        f"(1-min load {res['load_before']:.1f} before, {res['load_after']:.1f} after); figures "
        "are noisy, compare ratios within one run."
    )


def summary(res: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"bench": "seal", "chunk_bytes": CHUNK}
    for key, value in res.items():
        if isinstance(value, dict):
            out.update(
                {f"{key}_{k}": round(v) if k == "n" else round(v, 1) for k, v in value.items()}
            )
        elif isinstance(value, float):
            out[key] = round(value, 2)
        else:
            out[key] = value
    for key in ("aesgcm", "envelope", "seal_audio_chunk", "audio_record_path"):
        out[f"{key}_mb_s"] = round(res[key] * CHUNK / MB, 1)
    out["goal"] = GOAL
    for kind in ("wall", "steady"):
        out[f"meta_ratio_{kind}"] = round(res["meta_sealed"][kind] / res["meta_raw"][kind], 3)
        out[f"audio_ratio_{kind}"] = round(res["audio_sealed"][kind] / res["audio_raw"][kind], 3)
    out["goal_met"] = out["meta_ratio_steady"] >= GOAL and out["meta_ratio_wall"] >= GOAL
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=15000, help="metadata events per leg")
    parser.add_argument("--chunks", type=int, default=3000, help="1 s audio chunks per leg")
    parser.add_argument("--seconds", type=float, default=1.0, help="per in-process line")
    parser.add_argument("--no-faust", action="store_true", help="skip the faust pass-through")
    args = parser.parse_args()
    t0 = time.perf_counter()
    res = asyncio.run(run(args))
    report(res, args.seconds)
    print(f"(run took {time.perf_counter() - t0:.0f} s)")
    print(json.dumps(summary(res)))


if __name__ == "__main__":
    main()
