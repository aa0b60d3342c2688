"""A live, in-memory view of a compacted topic.

Why not a faust GlobalTable: faust tables write their own changelog format and have a history of
stalling in recovery; the control topics are written by the CLI with Avro values, and readers
need one precise guarantee faust does not expose — :meth:`CompactedView.sync`, "everything
written before this call is now visible" — which turns the race between a control change and a
data record into an ordinary wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from callvault.errors import KafkaUnavailable
from callvault.topics import topic_partitions
from schemas.codec import get_codec
from schemas.errors import SchemaDecodeError

log = structlog.get_logger(__name__)

T = TypeVar("T")

_FETCH_WAIT_MS = 100


class CompactedView(Generic[T]):
    """Key -> latest value of a compacted topic; tombstones (null values) delete the key.

    ``on_change(key, value)`` is called for every record applied to the view, in log order,
    right after the view changed (``value`` is None for a tombstone), including the records
    loaded by :meth:`start`. When :meth:`sync` returns, ``on_change`` has run for everything
    written before the call. An exception from ``on_change`` stops the view like a Kafka error
    does: :attr:`failure` is set and :meth:`sync` raises — a listener that could not act on a
    change (a key shred, say) must not be silently skipped.
    """

    def __init__(
        self,
        kafka: Mapping[str, Any],
        topic: str,
        schema_name: str,
        convert: Callable[[dict[str, Any]], T],
        *,
        request_timeout_s: float = 30.0,
        on_change: Callable[[str, T | None], None] | None = None,
    ) -> None:
        self._kafka = dict(kafka)  # kafka_client.kafka_options(): bootstrap + TLS
        self.topic = topic
        self._schema = schema_name
        self._convert = convert
        self._on_change = on_change
        self._timeout = request_timeout_s
        self._items: dict[str, T] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._progress = asyncio.Condition()
        self._failure: BaseException | None = None
        self._positions: dict[TopicPartition, int] = {}
        self.skipped = 0

    def get(self, key: str) -> T | None:
        return self._items.get(key)

    def items(self) -> dict[str, T]:
        return dict(self._items)

    def keys(self) -> list[str]:
        return list(self._items)

    @property
    def failure(self) -> BaseException | None:
        """Why the view stopped tailing (None while it is healthy)."""
        return self._failure

    async def start(self) -> None:
        """Start tailing and return once everything present at start is loaded."""
        if self._task is not None:
            return
        consumer = AIOKafkaConsumer(
            **self._kafka,
            enable_auto_commit=False,
            group_id=None,
            request_timeout_ms=int(self._timeout * 1000),
            # an idle view's long poll delays its own ListOffsets (sync) and its stop by up to
            # this long: 100 ms instead of the default 500 keeps CLI commands snappy
            fetch_max_wait_ms=_FETCH_WAIT_MS,
        )
        try:
            await consumer.start()
            partitions = await topic_partitions(consumer, self.topic)
            if not partitions:
                raise KafkaUnavailable(
                    f"control topic {self.topic} does not exist (run `callvault topics ensure`)",
                    retriable=False,
                )
            tps = [TopicPartition(self.topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            # the end offsets before the tail loop starts: asked later (sync), the request
            # would queue behind the loop's first long poll
            ends = await consumer.end_offsets(tps)
        except KafkaError as exc:
            await consumer.stop()
            raise KafkaUnavailable(f"cannot read {self.topic}: {exc}") from exc
        except KafkaUnavailable:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name=f"view:{self.topic}")
        await self._caught_up(ends, self._timeout)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def sync(self, timeout_s: float | None = None) -> None:
        """Wait until every record written before this call has been applied to the view."""
        consumer = self._require_consumer()
        tps = list(consumer.assignment())
        ends = await consumer.end_offsets(tps)
        await self._caught_up(ends, timeout_s or self._timeout)

    async def _caught_up(self, ends: Mapping[TopicPartition, int], timeout_s: float) -> None:
        def caught_up() -> bool:
            if self._failure is not None:
                return True
            return all(self._position(tp) >= end for tp, end in ends.items())

        async with self._progress:
            await asyncio.wait_for(self._progress.wait_for(caught_up), timeout_s)
        if self._failure is not None:
            raise KafkaUnavailable(f"view of {self.topic} failed: {self._failure}")

    async def wait_applied(
        self, partition: int, offset: int, timeout_s: float | None = None
    ) -> None:
        """Wait until the record at ``offset`` of ``partition`` (and all before it) is applied.

        What a writer waits for after its own write: unlike :meth:`sync` it needs no
        ``ListOffsets`` round trip, which queues behind the view's pending long-poll fetch on an
        idle topic (up to the fetch wait, 500 ms).
        """
        tp = TopicPartition(self.topic, partition)

        def applied() -> bool:
            return self._failure is not None or self._position(tp) > offset

        async with self._progress:
            await asyncio.wait_for(self._progress.wait_for(applied), timeout_s or self._timeout)
        if self._failure is not None:
            raise KafkaUnavailable(f"view of {self.topic} failed: {self._failure}")

    async def wait_for_key(self, key: str, timeout_s: float) -> T | None:
        """The value of ``key`` as soon as the view holds one; None after ``timeout_s``.

        For a reader waiting on another process's write (a certificate the worker issues): the
        tail loop wakes waiters after every fetch, so this returns within one fetch of it.
        """

        def present() -> bool:
            return self._failure is not None or key in self._items

        async with self._progress:
            try:
                await asyncio.wait_for(self._progress.wait_for(present), timeout_s)
            except TimeoutError:
                return None
        if self._failure is not None:
            raise KafkaUnavailable(f"view of {self.topic} failed: {self._failure}")
        return self._items.get(key)

    def _position(self, tp: TopicPartition) -> int:
        return self._positions.get(tp, 0)

    def _require_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("view not started")
        return self._consumer

    async def _run(self) -> None:
        consumer = self._require_consumer()
        codec = get_codec()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=200)
                for tp, messages in batches.items():
                    for msg in messages:
                        key = msg.key.decode() if msg.key is not None else None
                        if key is None:
                            self.skipped += 1
                        elif msg.value is None:
                            self._items.pop(key, None)
                            if self._on_change is not None:
                                self._on_change(key, None)
                        else:
                            try:
                                value = self._convert(codec.decode(self._schema, msg.value))
                            except SchemaDecodeError as exc:
                                # A bad control record must not hide the good ones after it.
                                self.skipped += 1
                                log.error(
                                    "control_record_undecodable",
                                    topic=self.topic,
                                    offset=msg.offset,
                                    error=str(exc),
                                )
                                continue
                            self._items[key] = value
                            if self._on_change is not None:
                                self._on_change(key, value)
                    if messages:
                        self._positions[tp] = messages[-1].offset + 1
                # Positions also advance past compacted-away or transactional gaps.
                for tp in consumer.assignment():
                    pos = await consumer.position(tp)
                    self._positions[tp] = max(self._positions.get(tp, 0), pos)
                async with self._progress:
                    self._progress.notify_all()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # surfaced to waiters through sync()
            self._failure = exc
            log.error("control_view_failed", topic=self.topic, error=str(exc))
            async with self._progress:
                self._progress.notify_all()
