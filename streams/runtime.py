"""What a worker's agents share: settings, topic names, the workspace view, ClickHouse, metrics,
and the producer path for outputs and dead letters.

Started lazily by the first agent that needs it (faust agents may start before app tasks finish),
guarded by a lock so it happens once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

import structlog
from aiokafka.errors import KafkaError
from faust.types import AppT, EventT

from callvault.control.view import CompactedView
from callvault.control.workspaces import WorkspacePolicy, workspace_view
from callvault.settings import Settings
from callvault.topics import Topics
from sinks.clickhouse.client import ClickHouse
from sinks.clickhouse.ddl import ensure_schema
from streams.deadletter import dead_letter
from streams.metrics import StreamMetrics
from streams.retry import retry_transient

log = structlog.get_logger(__name__)

Headers = Sequence[tuple[str, bytes]]


class Runtime:
    def __init__(self, settings: Settings, app: AppT) -> None:
        self.settings = settings
        self.app = app
        self.topics = Topics(settings)
        self.metrics = StreamMetrics()
        self.workspaces: CompactedView[WorkspacePolicy] = workspace_view(settings)
        self.clickhouse = ClickHouse(settings.clickhouse_dsn, settings.clickhouse.database)
        self._started = False
        self._lock = asyncio.Lock()

    @property
    def ready(self) -> bool:
        """True once the control views and the sink schema are up: what /healthz reports."""
        return self._started

    async def ensure_started(self) -> None:
        async with self._lock:
            if self._started:
                return
            await self.workspaces.start()
            await retry_transient(
                lambda: ensure_schema(self.clickhouse),
                is_transient=lambda e: getattr(e, "retriable", False),
                max_backoff_s=self.settings.worker.retry_max_backoff_s,
                what="clickhouse schema",
            )
            self._started = True
            log.info("worker_runtime_ready", region=self.settings.region)

    async def stop(self) -> None:
        await self.workspaces.stop()
        await self.clickhouse.close()

    async def policy(self, workspace_id: str) -> WorkspacePolicy | None:
        """The workspace's policy; on a miss, sync the view once, since the control record may
        have been written just before the data record and not be applied here yet."""
        policy = self.workspaces.get(workspace_id)
        if policy is None:
            await self.workspaces.sync()
            policy = self.workspaces.get(workspace_id)
        return policy

    async def send(
        self, topic: str, key: bytes | None, value: bytes, headers: Headers = ()
    ) -> Awaitable[Any]:
        """Hand a record to the producer; await the result to know it is durable (acks=all)."""
        return await self.app.producer.send(
            topic, key=key, value=value, partition=None, timestamp=None, headers=list(headers)
        )

    async def dead_letter(
        self, event: EventT, *, stage: str, reason: str, error: BaseException
    ) -> Awaitable[Any]:
        msg = event.message
        self.metrics.dead_letters.labels(stage, reason).inc()
        log.warning(
            "dead_letter",
            stage=stage,
            reason=reason,
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            error=str(error)[:500],
        )
        value = dead_letter(
            source_topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            key=msg.key,
            value=msg.value,
            reason=reason,
            error=error,
            stage=stage,
        )
        return await self.send(self.topics.deadletter_metadata, msg.key, value)

    async def deliver(self, pending: list[Awaitable[Any]], what: str) -> None:
        """Wait until every pending send is acknowledged by the broker."""
        try:
            await asyncio.gather(*pending)
        except KafkaError:
            # aiokafka already retried up to its delivery timeout; the batch is not acknowledged,
            # so stopping here loses nothing: the records are consumed again after restart.
            log.critical("delivery_failed", what=what)
            raise
