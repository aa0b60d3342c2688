"""The recordings stages of a worker: stage sealed records per call, finish calls that ended.

- :class:`RecordingStager` (``sealed.audio``, ``sealed.transcript``): each batch's records of a
  call become one staged object in the region's bucket (:mod:`sinks.recordings.staging`) before
  the batch is acknowledged: an S3 outage pauses consumption, never skips records.
- :class:`CallEndStager` (``sealed.metadata``): an ENDED event of a recorded call is staged as
  the call's end marker, then the call is queued for finishing.
- :class:`Finisher` (a worker timer): finishes queued calls with the
  :class:`~sinks.recordings.archive.Archiver`, retries with backoff, and rescans the staging
  area on start and every ``recordings.rescan_s`` so calls left by a crashed or rebalanced
  worker are finished too.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, cast

import structlog
from faust.types import EventT

from callvault.crypto.keyring import KeyRing
from schemas.codec import get_codec
from schemas.errors import SchemaDecodeError
from sinks.errors import SinkError, SinkRejected
from sinks.objects.layout import Stream
from sinks.objects.store import ObjectStore
from sinks.recordings.archive import Archiver
from sinks.recordings.staging import EndedCall, Staging
from streams.governance import utcnow
from streams.processors import decode_batch, not_reported, refuse_other_region
from streams.retry import retry_transient
from streams.runtime import Runtime

log = structlog.get_logger(__name__)

_SCHEMAS: dict[Stream, str] = {"audio": "SealedAudioChunk", "transcript": "SealedTranscriptSegment"}


class _RuntimeKeys:
    """The archiver's view of the worker's keys (KMS hiccups retried by the runtime)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    @property
    def ring(self) -> KeyRing:
        return self.rt.keyring

    async def key_for(self, key_id: str, *, workspace_id: str, call_id: str) -> bytes:
        return await self.ring.key_for(key_id, workspace_id=workspace_id, call_id=call_id)

    async def call_key(
        self, workspace_id: str, call_id: str, call_started_at: datetime | None
    ) -> tuple[str, bytes]:
        return await self.rt.call_key(workspace_id, call_id, call_started_at)


class Finisher:
    """Which calls to try to finish, and when (in-memory; the staging scan rebuilds it)."""

    def __init__(self, rt: Runtime, store: ObjectStore) -> None:
        s = rt.settings.recordings
        self.rt = rt
        self.archiver = Archiver(
            store, _RuntimeKeys(rt), tmp_dir=rt.settings.home / "recordings-tmp",
            part_size=s.part_size_mb * 1024 * 1024, settle_s=s.settle_s,
            settle_timeout_s=s.settle_timeout_s, orphan_after_s=s.orphan_after_s,
        )  # fmt: skip
        self._due: dict[tuple[str, str], float] = {}
        self._backoff: dict[tuple[str, str], float] = {}
        self._next_scan = 0.0
        self.finished = 0

    def poke(self, workspace_id: str, call_id: str, delay_s: float = 0.0) -> None:
        key = (workspace_id, call_id)
        when = time.monotonic() + delay_s
        self._due[key] = min(self._due.get(key, when), when)

    @property
    def pending(self) -> int:
        return len(self._due)

    async def run(self) -> None:
        """One timer tick: rescan if due, then try every call whose time has come."""
        now_m = time.monotonic()
        if now_m >= self._next_scan:
            self._next_scan = now_m + self.rt.settings.recordings.rescan_s
            for ws, call in await self.archiver.staging.calls():
                self.poke(ws, call)
        due = [k for k, when in self._due.items() if when <= now_m]
        limit = asyncio.Semaphore(4)  # calls ending together are finished side by side

        async def attempt(key: tuple[str, str]) -> None:
            async with limit:
                await self._try(key)

        await asyncio.gather(*(attempt(k) for k in due))

    async def _try(self, key: tuple[str, str]) -> None:
        rt, (ws, call) = self.rt, key
        try:
            outcome = await self.archiver.finish(ws, call, now=utcnow())
        except Exception as exc:  # store down, key store behind: retried, never dropped
            delay = min(self._backoff.get(key, 0.5) * 2, rt.settings.worker.retry_max_backoff_s)
            self._backoff[key] = delay
            self._due[key] = time.monotonic() + delay
            rt.metrics.sink_retries.labels("recordings.finish").inc()
            log.warning("recording_finish_retry", workspace_id=ws, call_id=call,
                        error=f"{type(exc).__name__}: {exc}", backoff_s=delay)  # fmt: skip
            return
        if outcome.status == "waiting":
            delay = min(self._backoff.get(key, 0.25) * 2, 5.0)
            self._backoff[key] = delay
            self._due[key] = time.monotonic() + delay
            return
        self._due.pop(key, None)
        self._backoff.pop(key, None)
        if outcome.status in ("finished", "amended"):
            self.finished += 1
            rt.metrics.records_out.labels(f"recordings.{outcome.status}").inc()
            log.info(
                "recording_" + outcome.status, workspace_id=ws, call_id=call,
                artifacts=sorted((outcome.manifest or {}).get("artifacts", {})),
                late_audio_objects=outcome.late_audio_objects,
            )  # fmt: skip
        elif outcome.status == "erased":
            rt.metrics.content_dropped.labels("recordings.finish", "erased").inc()


class RecordingStager:
    """``sealed.audio`` or ``sealed.transcript`` -> one staged object per call per batch.

    ``reports_bad_input=False`` when it runs after another stage on the same batch that already
    dead-letters undecodable records and refuses (and audits) other regions' records: each bad
    record is then reported once, not once per stage.
    """

    def __init__(
        self, rt: Runtime, stream: Stream, staging: Staging, finisher: Finisher,
        *, reports_bad_input: bool = True,
    ) -> None:  # fmt: skip
        self.rt, self.stream = rt, stream
        self.reports_bad_input = reports_bad_input
        self.stage = f"recordings.stage_{stream}"
        self.staging, self.finisher = staging, finisher
        self._dead_letter_topic = rt.topics.name(f"deadletter.{stream}")

    async def handle(self, events: Sequence[EventT]) -> None:
        rt = self.rt
        started = time.perf_counter()
        report = self._dead_letter if self.reports_bad_input else not_reported
        decoded, pending = await decode_batch(rt, self.stage, _SCHEMAS[self.stream], events, report)
        groups: dict[tuple[str, str], list[tuple[EventT, dict[str, Any]]]] = {}
        for event, rec in decoded:
            if rec["region"] != self.staging.store.region:
                if not self.reports_bad_input:
                    continue
                pending += await refuse_other_region(
                    rt, self.stage, self.staging.store.region, event, rec,
                    topic=self._dead_letter_topic, keep_value=False,
                )  # fmt: skip
                continue
            groups.setdefault((rec["workspace_id"], rec["call_id"]), []).append((event, rec))
        for (ws, call), items in groups.items():
            first = items[0][0].message
            write = functools.partial(
                self.staging.stage, ws, call, self.stream, first.partition, first.offset,
                [cast(bytes, e.message.value) for e, _ in items],
                max(r["expires_at"] for _, r in items),
            )  # fmt: skip
            try:
                await self._durably(write)
            except SinkRejected as exc:  # e.g. an id that cannot be part of an object key
                for event, _ in items:
                    pending.append(await self._dead_letter(event, "rejected_by_store", exc))
                continue
            rt.metrics.records_out.labels(self.stage).inc(len(items))
            if self.stream == "transcript":
                # segments can come after the call was finished (summaries): merge them soon
                self.finisher.poke(ws, call, delay_s=rt.settings.recordings.settle_s)
        await rt.deliver(pending, self.stage)
        rt.metrics.batch_seconds.labels(self.stage).observe(time.perf_counter() - started)

    async def _durably(self, write: Callable[[], Awaitable[None]]) -> None:
        await _durably(self.rt, self.stage, write)

    async def _dead_letter(self, event: EventT, reason: str, exc: Exception) -> Awaitable[Any]:
        # content dead letters never carry the (sealed) content: see streams.sealers
        return await self.rt.dead_letter(
            event, stage=self.stage, reason=reason, error=exc,
            topic=self._dead_letter_topic, keep_value=False,
        )  # fmt: skip


async def _durably(rt: Runtime, stage: str, write: Callable[[], Awaitable[None]]) -> None:
    """Retry a staging write until it is durable (consumption pauses meanwhile); only a store
    refusal (:class:`SinkRejected`) comes back to the caller."""
    await retry_transient(
        write,
        is_transient=lambda e: isinstance(e, SinkError) and e.retriable,
        max_backoff_s=rt.settings.worker.retry_max_backoff_s,
        what=stage,
        on_retry=lambda _e: rt.metrics.sink_retries.labels(stage).inc(),
    )


class CallEndStager:
    """``sealed.metadata``: stage the end marker of every recorded call of this region."""

    stage = "recordings.ended"

    def __init__(self, rt: Runtime, staging: Staging, finisher: Finisher) -> None:
        self.rt, self.staging, self.finisher = rt, staging, finisher
        self._codec = get_codec()

    async def handle(self, events: Sequence[EventT]) -> None:
        rt = self.rt
        ended: list[EndedCall] = []
        for event in events:
            try:
                if event.message.value is None:
                    continue
                rec = self._codec.decode("SealedCallEvent", event.message.value)
            except SchemaDecodeError:
                continue  # the analytics stage on this topic dead-letters it
            if (
                rec["kind"] != "ENDED"
                or rec["suppressed"]
                or not rec["recording_enabled"]
                or rec["region"] != self.staging.store.region  # refused by the analytics stage
            ):
                continue
            ended.append(EndedCall.from_event(rec, now=utcnow()))
        # markers are independent objects: written concurrently, all durable before returning
        limit = asyncio.Semaphore(16)

        async def mark(call: EndedCall) -> None:
            async with limit:
                try:
                    await _durably(rt, self.stage, functools.partial(self.staging.mark_ended, call))
                except SinkRejected as exc:  # ids unusable as keys: its audio was refused too
                    log.warning("recording_end_rejected", call_id=call.call_id, error=str(exc))
                    return
            self.finisher.poke(call.workspace_id, call.call_id)

        await asyncio.gather(*(mark(call) for call in ended))
