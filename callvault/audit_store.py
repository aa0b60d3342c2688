"""Reading a region's audit chain topic (``audit.chain.<region>``): its last entry (what the
chainer continues from) and all of it in order (what ``callvault audit verify`` checks).

The chain topic has one partition, so its offsets are the chain's order.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from callvault.errors import KafkaUnavailable
from callvault.kafka_client import kafka_options
from callvault.settings import Settings
from callvault.topics import Topics, topic_partitions
from schemas.codec import get_codec
from schemas.errors import SchemaDecodeError


class UnreadableEntry(Exception):
    """A chain record that is not an ``AuditEvent`` (carried to the verifier as a failure)."""

    def __init__(self, offset: int, error: Exception) -> None:
        super().__init__(f"chain record at offset {offset} cannot be decoded: {error}")
        self.offset = offset


class ChainLog:
    """One region's chain topic, read without a consumer group (``async with``)."""

    def __init__(self, settings: Settings, region: str | None = None) -> None:
        self.region = region or settings.region
        self.topic = Topics(settings).audit_chain(self.region)
        self.tp = TopicPartition(self.topic, 0)
        self._settings = settings
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> Self:
        consumer = AIOKafkaConsumer(
            **kafka_options(self._settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,  # reads end at the end offset: do not long-poll there
            request_timeout_ms=int(self._settings.kafka.request_timeout_s * 1000),
        )
        try:
            await consumer.start()
            if 0 not in await topic_partitions(consumer, self.topic):
                await consumer.stop()
                raise KafkaUnavailable(
                    f"audit chain topic {self.topic} does not exist (run `callvault topics "
                    "ensure`)",
                    retriable=False,
                )
            consumer.assign([self.tp])
            consumer.pause(self.tp)  # fetched only while _read runs (the chainer keeps it open)
        except KafkaError as exc:
            await consumer.stop()
            raise KafkaUnavailable(f"cannot read {self.topic}: {exc}") from exc
        self._consumer = consumer
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("ChainLog used outside 'async with'")
        return self._consumer

    async def bounds(self) -> tuple[int, int]:
        """(log start offset, end offset): entries before the start expired by retention."""
        begin = (await self.consumer.beginning_offsets([self.tp]))[self.tp]
        end = (await self.consumer.end_offsets([self.tp]))[self.tp]
        return begin, end

    async def end_offset(self) -> int:
        return (await self.consumer.end_offsets([self.tp]))[self.tp]

    async def _read(self, start: int, end: int) -> AsyncIterator[tuple[int, bytes | None]]:
        if start >= end:
            return
        consumer = self.consumer
        consumer.seek(self.tp, start)
        consumer.resume(self.tp)
        try:
            at = start
            while at < end:
                batches = await consumer.getmany(self.tp, timeout_ms=500)
                msgs = batches.get(self.tp, [])
                for msg in msgs:
                    if msg.offset >= end:
                        return
                    at = msg.offset + 1
                    yield msg.offset, msg.value
                if not msgs:  # offsets without data records (transaction markers) at the end
                    at = max(at, await consumer.position(self.tp))
        finally:
            consumer.pause(self.tp)

    async def last(self) -> tuple[int, dict[str, Any]] | None:
        """The last entry (offset, decoded event), or None for an empty chain."""
        begin, end = await self.bounds()
        window = 16
        while end > begin:
            start = max(begin, end - window)
            found: tuple[int, bytes | None] | None = None
            async for item in self._read(start, end):
                found = item
            if found is not None:
                return found[0], _decode(*found)
            if start == begin:
                return None
            window *= 4  # only non-data records (transaction markers) at the end: look further
        return None

    async def entries(
        self, *, on_progress: Callable[[int], None] | None = None
    ) -> AsyncGenerator[tuple[int, dict[str, Any]], None]:
        """Every entry from the log start to the end offset at call time, in order; an
        undecodable record raises :class:`UnreadableEntry` at its place."""
        begin, end = await self.bounds()
        async for offset, value in self._read(begin, end):
            yield offset, _decode(offset, value)
            if on_progress is not None:
                on_progress(1)


def _decode(offset: int, value: bytes | None) -> dict[str, Any]:
    try:
        if value is None:
            raise SchemaDecodeError("record has no value")
        return get_codec().decode("AuditEvent", value)
    except SchemaDecodeError as exc:
        raise UnreadableEntry(offset, exc) from exc
