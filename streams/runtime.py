"""What a worker's agents share: settings, topic names, the workspace view, ClickHouse, metrics,
and the producer path for outputs and dead letters.

Started lazily by the first agent that needs it (faust agents may start before app tasks finish),
guarded by a lock so it happens once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from aiokafka.errors import KafkaError
from faust.types import AppT, EventT

from callvault.audit import encode_audit
from callvault.control.view import CompactedView
from callvault.control.workspaces import WorkspacePolicy, workspace_view
from callvault.crypto.errors import KeyProviderError
from callvault.crypto.keyring import KeyRing
from callvault.settings import Settings
from callvault.topics import Topics
from sinks.clickhouse.client import ClickHouse
from sinks.clickhouse.ddl import ensure_schema
from sinks.objects.store import ObjectStore
from streams.deadletter import dead_letter
from streams.metrics import StreamMetrics
from streams.retry import retry_transient

if TYPE_CHECKING:
    from callvault.control.keys import KeyAdmin, Keys
    from streams.recordings import Finisher

log = structlog.get_logger(__name__)

Headers = Sequence[tuple[str, bytes]]


class SuppressedCalls:
    """Calls the metadata stream said are suppressed, so their audio and transcript processed
    later in this worker are dropped even if their own records say otherwise.

    In-process state is enough because a call's records share its key, hence its partition
    number on every ``ingest.*`` topic (same partition counts), and faust assigns co-partitioned
    topics' partitions to the same worker. Entries live for a day (longer than any call may
    last) and the set is bounded; what it forgets, the record's own flag and the policy still
    guard.
    """

    def __init__(self, ttl_s: float = 86_400, max_entries: int = 1_000_000) -> None:
        self._ttl, self._max = ttl_s, max_entries
        self._calls: OrderedDict[str, float] = OrderedDict()

    def add(self, call_id: str) -> None:
        self._calls[call_id] = time.monotonic() + self._ttl
        self._calls.move_to_end(call_id)
        while len(self._calls) > self._max:
            self._calls.popitem(last=False)

    def __contains__(self, call_id: object) -> bool:
        deadline = self._calls.get(call_id)  # type: ignore[call-overload]
        if deadline is None:
            return False
        if deadline < time.monotonic():
            del self._calls[call_id]  # type: ignore[arg-type]
            return False
        return True


class Runtime:
    def __init__(self, settings: Settings, app: AppT) -> None:
        self.settings = settings
        self.app = app
        self.topics = Topics(settings)
        self.metrics = StreamMetrics()
        self.workspaces: CompactedView[WorkspacePolicy] = workspace_view(settings)
        self.clickhouse = ClickHouse(
            settings.clickhouse_dsn, settings.clickhouse.database, isolated=True,
            workspace_secret=settings.clickhouse.workspace_secret.get_secret_value().encode(),
        )  # fmt: skip
        self.suppressed_calls = SuppressedCalls()
        #: this region's bucket (recordings, documents, staging); boto3 runs on threads
        self.objects = ObjectStore(settings)
        self.finisher: Finisher | None = None  # set by the app when recordings are on
        self._keys: Keys | None = None
        self._key_admin: KeyAdmin | None = None
        self._resources = contextlib.AsyncExitStack()
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
            from callvault.control.keys import KeyAdmin, open_keys  # the key store needs Kafka

            self._keys = await self._resources.enter_async_context(open_keys(self.settings))
            self._key_admin = KeyAdmin(
                self.settings, self._keys, actor="worker:retention", actor_kind="SYSTEM"
            )
            await retry_transient(
                lambda: ensure_schema(self.clickhouse),
                is_transient=lambda e: getattr(e, "retriable", False),
                max_backoff_s=self.settings.worker.retry_max_backoff_s,
                what="clickhouse schema",
            )
            self._started = True
            log.info("worker_runtime_ready", region=self.settings.region)

    async def stop(self) -> None:
        await self._resources.aclose()
        await self.workspaces.stop()
        await self.clickhouse.close()
        self.objects.close()

    @property
    def keys(self) -> Keys:
        if self._keys is None:
            raise RuntimeError("runtime not started")
        return self._keys

    @property
    def key_admin(self) -> KeyAdmin:
        """Audited key operations, acting as the worker (retention shreds)."""
        if self._key_admin is None:
            raise RuntimeError("runtime not started")
        return self._key_admin

    @property
    def keyring(self) -> KeyRing:
        return self.keys.ring

    async def call_key(
        self, workspace_id: str, call_id: str, call_started_at: datetime | None
    ) -> tuple[str, bytes]:
        """The call's data key; a KMS hiccup pauses the stream (retried), never drops data."""
        return await retry_transient(
            lambda: self.keyring.call_key(workspace_id, call_id, call_started_at=call_started_at),
            is_transient=lambda e: isinstance(e, KeyProviderError) and e.retriable,
            max_backoff_s=self.settings.worker.retry_max_backoff_s,
            what="call key",
        )

    async def audit(self, event: Mapping[str, Any]) -> Awaitable[Any]:
        key, value = encode_audit(event)
        return await self.send(self.topics.audit_events, key, value)

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
        self,
        event: EventT,
        *,
        stage: str,
        reason: str,
        error: BaseException,
        topic: str | None = None,
        keep_value: bool = True,
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
            value=msg.value if keep_value else None,
            reason=reason,
            error=error,
            stage=stage,
        )
        return await self.send(topic or self.topics.deadletter_metadata, msg.key, value)

    async def deliver(self, pending: list[Awaitable[Any]], what: str) -> None:
        """Wait until every pending send is acknowledged by the broker."""
        try:
            await asyncio.gather(*pending)
        except KafkaError:
            # aiokafka already retried up to its delivery timeout; the batch is not acknowledged,
            # so stopping here loses nothing: the records are consumed again after restart.
            log.critical("delivery_failed", what=what)
            raise
