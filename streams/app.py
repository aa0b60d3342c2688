"""The faust app factory. ``create_app(settings)`` builds a fresh App each call; nothing is bound
to a loop at import.

How delivery is kept honest on top of faust (see DESIGN.md for the upstream bugs):
- agents run at ``concurrency=1`` (faust-streaming#606: higher concurrency can commit past
  unprocessed messages);
- ``processing_guarantee="at_least_once"``; exactly-once has open duplicate/fencing bugs;
- agents read with ``noack_take`` and acknowledge a batch only after the handler returned, i.e.
  after outputs were acknowledged by the broker (acks=all) or the sink flushed. ``take()`` would
  acknowledge in a ``finally`` even when the handler was cancelled mid-write;
- values are raw bytes, decoded by our codec, so undecodable input becomes a dead letter instead
  of a faust deserialisation crash;
- ``stream_wait_empty=False``: stopping never waits for a batch stuck retrying a store outage;
- topics are created by ``callvault topics ensure``; faust may not declare any, and the leader
  topic is disabled, so the broker's ``auto.create.topics.enable=false`` holds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, cast

import faust
import structlog
from faust.streams import Stream
from faust.types import EventT, StreamT

from callvault.kafka_client import faust_credentials
from callvault.settings import Settings
from sinks.clickhouse.audit_log import AuditLogSink
from sinks.clickhouse.transcripts import TranscriptsSink
from sinks.recordings.staging import Staging
from streams.audit_chain import AuditChainer
from streams.erasure import Eraser
from streams.processors import AnalyticsWriter
from streams.recordings import CallEndStager, Finisher, RecordingStager
from streams.retention import RetentionSweeper
from streams.runtime import Runtime
from streams.sealers import AudioSealer, MetadataSealer, TranscriptSealer
from streams.siem import SiemFanout
from streams.web import register_views

log = structlog.get_logger(__name__)


class BatchHandler(Protocol):
    """What an agent drives: a stage name and a handler that returns once outputs are durable."""

    @property
    def stage(self) -> str: ...

    async def handle(self, events: Sequence[EventT[Any]], /) -> None: ...


async def checkpointed(
    stream: StreamT[Any],
    batch_max: int,
    within: float,
    handle: Callable[[Sequence[EventT[Any]]], Awaitable[None]],
) -> None:
    """Feed batches to ``handle`` and acknowledge them only after it returned.

    If ``handle`` is cancelled or the process dies mid-batch, nothing of the batch is
    acknowledged, so the next owner of the partition consumes it again.
    """
    concrete = cast(Stream[Any], stream)
    async for batch in concrete.noack_take(batch_max, within):
        # noack_take yields events, not values; faust's annotation says values.
        events = cast(Sequence[EventT[Any]], batch)
        await handle(events)
        for event in events:
            await concrete.ack(event)


class Stages:
    """Several stages on one topic's batch, in order; the batch is done when all are."""

    def __init__(self, handlers: Sequence[BatchHandler]) -> None:
        self.handlers = list(handlers)
        self.stage = "+".join(h.stage for h in handlers)

    async def handle(self, events: Sequence[EventT[Any]], /) -> None:
        for handler in self.handlers:
            await handler.handle(events)


def app_id(settings: Settings) -> str:
    return f"{settings.kafka.topic_prefix}callvault-worker-{settings.region}"


def faust_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """The faust settings every Callvault app runs with (see the module docstring for why)."""
    conf: dict[str, Any] = {
        "broker": f"kafka://{settings.kafka.bootstrap}",
        "key_serializer": "raw",
        "value_serializer": "raw",
        "processing_guarantee": "at_least_once",
        # On stop or rebalance, do not wait for in-flight batches: a sink retrying through an
        # outage never finishes, and faust would wait until the process is killed. Nothing is
        # lost by not waiting: an unfinished batch was never acknowledged and is consumed again.
        "stream_wait_empty": False,
        "topic_allow_declare": False,
        "topic_disable_leader": True,
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "broker_commit_interval": settings.worker.commit_interval_s,
        "broker_session_timeout": settings.worker.session_timeout_s,
        "broker_heartbeat_interval": settings.worker.session_timeout_s / 3,
        "web_enabled": True,
        "web_bind": settings.worker.web_host,
        "web_host": settings.worker.web_host,
        "web_port": settings.worker.web_port,
        "datadir": str(settings.home / "faust" / app_id(settings)),
        "store": "memory://",
    }
    credentials = faust_credentials(settings)
    if credentials is not None:
        conf["broker_credentials"] = credentials
    conf.update(overrides)
    return conf


def create_app(settings: Settings, **overrides: Any) -> faust.App:
    conf = faust_config(settings, **overrides)
    app = faust.App(app_id(settings), **conf)
    rt = Runtime(settings, app)
    app.callvault_runtime = rt  # type: ignore[attr-defined]
    batch_max, within = settings.worker.batch_max, settings.worker.batch_within_s

    def topic(logical: str) -> Any:
        return app.topic(rt.topics.name(logical), value_serializer="raw", key_serializer="raw")

    def batch_agent(handler: BatchHandler, source: str) -> None:
        """One agent per (source topic, handler), at concurrency 1, checkpointed."""

        async def agent(stream: StreamT[bytes]) -> None:
            await rt.ensure_started()
            await checkpointed(stream, batch_max, within, handler.handle)

        name = handler.stage.replace(".", "-").replace("+", "-and-")
        app.agent(topic(source), concurrency=1, name=name)(agent)

    # governance: raw -> sealed
    batch_agent(MetadataSealer(rt), "ingest.metadata")
    batch_agent(AudioSealer(rt), "ingest.audio")
    batch_agent(TranscriptSealer(rt), "ingest.transcript")
    # sinks: one agent per topic; several stages of a topic run one after the other on each
    # batch, which is acknowledged once all of them returned (two faust agents on one topic
    # lost records when a worker was killed: see tests/streams/test_metadata_slice.py)
    sinks: dict[str, list[BatchHandler]] = {
        "sealed.metadata": [AnalyticsWriter(rt)],
        "sealed.transcript": [
            AnalyticsWriter(rt, stage="analytics.transcripts", schema="SealedTranscriptSegment",
                            sink=TranscriptsSink)
        ],
        "sealed.audio": [],
        "audit.events": [
            AnalyticsWriter(rt, stage="analytics.audit", schema="AuditEvent", sink=AuditLogSink)
        ],
    }  # fmt: skip
    if settings.siem.any_enabled:
        siem = SiemFanout(rt)
        sinks["audit.events"].append(siem)

        @app.on_before_shutdown.connect
        async def close_siem(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
            await siem.close()

    # the hash-chained, signed trail of this region (audit.chain.<region>)
    chainer = AuditChainer(rt)
    sinks["audit.events"].append(chainer)

    @app.on_before_shutdown.connect
    async def close_chainer(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await chainer.close()

    # recordings, transcript and summary documents in this region's bucket
    if settings.recordings.enabled:
        staging = Staging(rt.objects)
        finisher = Finisher(rt, rt.objects)
        rt.finisher = finisher
        sinks["sealed.audio"].append(RecordingStager(rt, "audio", staging, finisher))
        sinks["sealed.transcript"].append(  # after analytics.transcripts, which reports bad input
            RecordingStager(rt, "transcript", staging, finisher, reports_bad_input=False)
        )
        sinks["sealed.metadata"].append(CallEndStager(rt, staging, finisher))

        @app.timer(settings.recordings.poll_s)
        async def finish_recordings() -> None:
            if not rt.ready:
                return
            try:
                await finisher.run()
            except Exception:  # retried next tick; an S3 outage must not stop the worker
                log.exception("recordings_finish_failed")

    for source, handlers in sinks.items():
        if handlers:
            batch_agent(handlers[0] if len(handlers) == 1 else Stages(handlers), source)

    # erasure requests of this region's workspaces, each ending in a signed certificate
    eraser = Eraser(rt)
    batch_agent(eraser, "control.erasure")

    @app.on_before_shutdown.connect
    async def close_eraser(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await eraser.close()

    sweeper = RetentionSweeper(rt)

    @app.timer(settings.worker.retention_sweep_s)
    async def enforce_retention() -> None:
        if not rt.ready:
            return
        try:
            await sweeper.sweep()
            await eraser.recheck()
        except Exception:  # the next pass retries; a store outage must not stop the worker
            log.exception("retention_sweep_failed")

    register_views(app, rt)
    return app
