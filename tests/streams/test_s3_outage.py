"""The recordings sink through a real S3 outage: a private SeaweedFS is stopped mid-stream and
started again on the same ports and data directory.

While it is down the stages writing to S3 retry with backoff and consumption pauses — nothing of
the new call is acknowledged, so the committed offset of ``sealed.audio`` stays where the written
data ends — and once it is back the call's recording, transcript and manifest land as if nothing
had happened, with nothing dead-lettered.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import socket
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from callvault.control.workspaces import WorkspaceDirectory
from callvault.crypto.envelope import Aad
from callvault.devstack import seaweed
from callvault.errors import DevStackError
from callvault.settings import Settings
from callvault.simulate import publish_records
from callvault.topics import Topics, ensure_topics
from callvault.worker_process import WorkerProcess, committed_and_end, wait_caught_up
from sinks.objects import layout
from sinks.objects.store import ObjectStore
from sinks.recordings.mp3 import iter_frames
from tests.kafka_read import read_all
from tests.ports import free_port
from tests.streams.conftest import group_of, isolated_settings
from tests.streams.test_recordings import _call, _manifest, _open
from tests.streams.test_sealing_slice import _segment

pytestmark = pytest.mark.integration

CHUNKS_PER_LEG = 3  # 1 s of audio each
#: the stage that stages sealed.audio in S3 (alone on its topic, so its own name is the label)
AUDIO_STAGE = "recordings.stage_audio"
#: the test stack's SeaweedFS listens on these (HTTP and gRPC): never hand them out
_TEST_STACK_WEED = set(range(21333, 21338))


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _weed_http_port() -> int:
    """An HTTP port whose gRPC twin (+10000) is free too, both below the ephemeral range:
    the twin comes from the test service range (30000-32700), the HTTP port 10000 below it."""
    for _ in range(100):
        grpc = free_port()
        http = grpc - seaweed.GRPC_OFFSET
        if http not in _TEST_STACK_WEED and grpc not in _TEST_STACK_WEED and _bindable(http):
            return http
    raise RuntimeError("no free SeaweedFS port pair")


class PrivateSeaweed:
    """A ``weed mini`` owned by one test, on its own ports and under its own home, started and
    stopped with the devstack code. Restarts keep the ports and the data directory."""

    def __init__(self, base: Settings) -> None:
        self._base = base
        self.settings = self._on_new_ports()

    def _on_new_ports(self) -> Settings:
        ports = {
            name: _weed_http_port()
            for name in ("s3_port", "weed_master_port", "weed_volume_port", "weed_filer_port",
                         "weed_admin_port")
        }  # fmt: skip
        dev = self._base.dev.model_copy(update=ports)
        settings = self._base.model_copy(update={"dev": dev})
        s3 = settings.s3.model_copy(update={"endpoint": seaweed.endpoint(settings)})
        settings = settings.model_copy(update={"s3": s3})
        seaweed.check_settings(settings)
        return settings

    def first_start(self) -> None:
        """Start on fresh ports; once more on others if something took one meanwhile."""
        try:
            self.start()
        except DevStackError:
            seaweed.stop(self.settings)
            self.settings = self._on_new_ports()
            self.start()

    def start(self) -> None:
        seaweed.start(self.settings)
        seaweed.wait_ready(self.settings, 60)  # also creates the region buckets

    def stop(self) -> None:
        seaweed.stop(self.settings)

    @property
    def running(self) -> bool:
        return seaweed.process(self.settings).is_running()


@pytest.fixture
async def weed(stack_settings: Settings, tmp_path: Path) -> AsyncIterator[PrivateSeaweed]:
    """Isolated worker settings (own topics, home, web port; fast backoff) whose S3 is a private
    SeaweedFS, with the topics and two workspaces in place. The SeaweedFS is stopped at the end
    whatever happened."""
    base = isolated_settings(stack_settings, tmp_path, retry_max_backoff_s=1.0)
    # a transcript staged after the call was finished is merged this long after: keep it short
    base = base.model_copy(
        update={"recordings": base.recordings.model_copy(update={"settle_s": 1.0})}
    )
    private = PrivateSeaweed(base)
    try:
        await asyncio.to_thread(private.first_start)
        settings = private.settings
        await ensure_topics(settings)
        async with WorkspaceDirectory(settings) as directory:
            await directory.create("acme", region="eu", retention_days=30)
        yield private
    finally:
        await asyncio.to_thread(private.stop)


async def _until(
    check: Callable[[], Awaitable[Any]], what: str, timeout_s: float, worker: WorkerProcess
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the worker's log otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if worker.proc is not None and worker.proc.poll() is not None:
            raise AssertionError(f"worker died waiting for {what}:\n{worker.log_tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{worker.log_tail()}")
        await asyncio.sleep(0.2)


def _metric(settings: Settings, name: str, stage: str) -> float:
    """A counter of the running worker, read from its /metrics endpoint."""
    url = f"http://{settings.worker.web_host}:{settings.worker.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    prefix = f'{name}{{stage="{stage}"}} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


async def _retries(settings: Settings) -> float:
    return await asyncio.to_thread(_metric, settings, "callvault_sink_retries_total", AUDIO_STAGE)


async def _staged_audio(settings: Settings) -> float:
    return await asyncio.to_thread(_metric, settings, "callvault_records_out_total", AUDIO_STAGE)


async def _publish_call(settings: Settings) -> tuple[str, datetime]:
    """A whole call: transcript and audio first, its metadata (ENDED with chunk counts) last."""
    call_id, started, events, chunks = _call(chunks_per_leg=CHUNKS_PER_LEG)
    segment = _segment(call_id, "my order number is 4471", started=started)
    await publish_records(settings, "ingest.transcript", "TranscriptSegment", [segment])
    await publish_records(settings, "ingest.audio", "AudioChunk", chunks)
    await publish_records(settings, "ingest.metadata", "CallEvent", events)
    return call_id, started


async def _check_landed(
    settings: Settings, store: ObjectStore, call_id: str, started: datetime, worker: WorkerProcess
) -> None:
    """The call's recording decrypts to the right length, its transcript is in the manifest,
    and nothing of it is left in staging."""

    async def complete() -> dict | None:
        manifest = await _manifest(store, call_id, started)
        return manifest if manifest and "transcript" in manifest["artifacts"] else None

    manifest = await _until(complete, f"the manifest of {call_id}", 30, worker)
    assert manifest["audio_chunks_missing"] == {"CALLER": 0, "AGENT": 0}
    rec = manifest["artifacts"]["recording"]
    mp3 = await _open(settings, store, rec, Aad("acme", call_id, "recording", "eu"))
    seconds = sum(f.samples for f in iter_frames(mp3)) / 8000
    assert CHUNKS_PER_LEG <= seconds <= CHUNKS_PER_LEG + 0.3  # plus encoder delay/padding
    meta = (await store.head(rec["key"]))["metadata"]  # type: ignore[index]
    assert int(meta["cv-duration-ms"]) == CHUNKS_PER_LEG * 1000
    doc = await _open(settings, store, manifest["artifacts"]["transcript"],
                      Aad("acme", call_id, "transcript-document", "eu"))  # fmt: skip
    assert b"my order number is 4471" in doc
    assert await store.list_objects(layout.staging_prefix("acme", call_id)) == []


async def test_an_s3_outage_pauses_the_recordings_sink_and_everything_lands_after(
    weed: PrivateSeaweed, tmp_path: Path, worker_factory: Any
) -> None:
    t0 = time.monotonic()
    settings = weed.settings
    topics = Topics(settings)
    group = group_of(settings)
    sealed_audio = topics.name("sealed.audio")
    every_topic = [topics.name(f"{kind}.{stream}") for kind in ("ingest", "sealed")
                   for stream in ("metadata", "audio", "transcript")]  # fmt: skip
    store = ObjectStore(settings)
    try:
        worker: WorkerProcess = worker_factory(settings)
        await worker.wait_healthy()

        # call A with S3 up: it lands, and the group commits all of it
        call_a, started_a = await _publish_call(settings)
        await _check_landed(settings, store, call_a, started_a, worker)
        await wait_caught_up(settings, group, every_topic, timeout_s=30, worker=worker)
        written, ends_a = await committed_and_end(settings, group, [sealed_audio])
        assert written == ends_a
        staged_a = await _staged_audio(settings)
        assert staged_a == 2 * CHUNKS_PER_LEG
        retries_before = await _retries(settings)
        t_a = time.monotonic()

        # S3 goes away; call B arrives in full
        await asyncio.to_thread(weed.stop)
        assert not weed.running
        call_b, started_b = await _publish_call(settings)

        async def sealed_b() -> bool:  # sealing needs no S3: B's audio reaches sealed.audio
            _, ends = await committed_and_end(settings, group, [sealed_audio])
            return sum(ends.values()) == sum(ends_a.values()) + 2 * CHUNKS_PER_LEG

        await _until(sealed_b, "call B's audio sealed", 20, worker)

        # the audio stage retries with backoff instead of skipping, and commits nothing of B
        async def retried(n: float) -> bool:
            return await _retries(settings) >= retries_before + n

        for n in (2, 4, 6):  # and the pause holds over several backoff rounds
            await _until(functools.partial(retried, n), f"{n} audio staging retries", 20, worker)
            committed, ends = await committed_and_end(settings, group, [sealed_audio])
            assert committed == ends_a, f"committed past the written data: {committed} / {ends}"
            assert await _staged_audio(settings) == staged_a
        outage_retries = await _retries(settings) - retries_before
        t_down = time.monotonic()

        # a worker stopped mid-outage exits on SIGTERM (it does not wait for the stuck batch)
        # and its successor resumes from what was committed
        await asyncio.to_thread(worker.stop, 20.0)
        assert worker.proc is not None and worker.proc.returncode != -signal.SIGKILL, (
            f"the worker had to be killed:\n{worker.log_tail()}"
        )
        worker = worker_factory(settings)
        await worker.wait_healthy()
        committed, _ = await committed_and_end(settings, group, [sealed_audio])
        assert committed == ends_a

        # S3 is back (same ports, same data): B lands, A is still there, the group catches up
        await asyncio.to_thread(weed.start)
        t_up = time.monotonic()
        await _check_landed(settings, store, call_b, started_b, worker)
        await wait_caught_up(settings, group, every_topic, timeout_s=30, worker=worker)
        committed, ends = await committed_and_end(settings, group, [sealed_audio])
        assert committed == ends and ends != ends_a
        # the successor (counters start at zero) staged exactly B's audio: A's was committed
        assert await _staged_audio(settings) == 2 * CHUNKS_PER_LEG
        await _check_landed(settings, store, call_a, started_a, worker)
        for stream in ("audio", "transcript"):
            assert await read_all(settings, topics.name(f"deadletter.{stream}")) == []
        t_end = time.monotonic()
        print(
            f"\ncall A landed after {t_a - t0:.1f}s; outage {t_down - t_a:.1f}s with "
            f"{outage_retries:g} audio staging retries; restart {t_up - t_down:.1f}s; "
            f"call B landed and caught up {t_end - t_up:.1f}s after; total {t_end - t0:.1f}s"
        )
    finally:
        store.close()
