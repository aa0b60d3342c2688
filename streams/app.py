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
- topics are created by ``callvault topics ensure``; faust may not declare any, and the leader
  topic is disabled, so the broker's ``auto.create.topics.enable=false`` holds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import faust
import structlog
from faust.streams import Stream
from faust.types import EventT, StreamT

from callvault.kafka_client import faust_credentials
from callvault.settings import Settings
from sinks.clickhouse.audit_log import AuditLogSink
from sinks.clickhouse.transcripts import TranscriptsSink
from streams.processors import AnalyticsWriter
from streams.retention import RetentionSweeper
from streams.runtime import Runtime
from streams.sealers import AudioSealer, MetadataSealer, Sealer, TranscriptSealer
from streams.web import register_views

log = structlog.get_logger(__name__)


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


def app_id(settings: Settings) -> str:
    return f"{settings.kafka.topic_prefix}callvault-worker-{settings.region}"


def faust_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """The faust settings every Callvault app runs with (see the module docstring for why)."""
    conf: dict[str, Any] = {
        "broker": f"kafka://{settings.kafka.bootstrap}",
        "key_serializer": "raw",
        "value_serializer": "raw",
        "processing_guarantee": "at_least_once",
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

    def batch_agent(handler: Sealer | AnalyticsWriter, source: str) -> None:
        """One agent per (source topic, handler), at concurrency 1, checkpointed."""

        async def agent(stream: StreamT[bytes]) -> None:
            await rt.ensure_started()
            await checkpointed(stream, batch_max, within, handler.handle)

        app.agent(topic(source), concurrency=1, name=handler.stage.replace(".", "-"))(agent)

    # governance: raw -> sealed
    batch_agent(MetadataSealer(rt), "ingest.metadata")
    batch_agent(AudioSealer(rt), "ingest.audio")
    batch_agent(TranscriptSealer(rt), "ingest.transcript")
    # this region's analytics store
    batch_agent(AnalyticsWriter(rt), "sealed.metadata")
    transcripts = AnalyticsWriter(
        rt, stage="analytics.transcripts", schema="SealedTranscriptSegment", sink=TranscriptsSink
    )
    batch_agent(transcripts, "sealed.transcript")
    audit = AnalyticsWriter(rt, stage="analytics.audit", schema="AuditEvent", sink=AuditLogSink)
    batch_agent(audit, "audit.events")

    sweeper = RetentionSweeper(rt)

    @app.timer(settings.worker.retention_sweep_s)
    async def enforce_retention() -> None:
        if not rt.ready:
            return
        try:
            await sweeper.sweep()
        except Exception:  # the next pass retries; a store outage must not stop the worker
            log.exception("retention_sweep_failed")

    register_views(app, rt)
    return app
