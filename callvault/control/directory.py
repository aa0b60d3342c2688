"""The write side of a control topic: a live view plus an idempotent producer.

Every directory (workspaces, trunks, extensions, keys, erasure requests) writes the same way —
encode, send with acks=all, then wait until its own view shows the write — so a command that
returns has made its change visible to every reader that syncs. Deleting a key is the same
with a tombstone (:meth:`ControlDirectory._delete`): compaction then drops it from the log.
"""

from __future__ import annotations

from typing import Any, Generic, Self, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from callvault.control.view import CompactedView
from callvault.errors import KafkaUnavailable
from callvault.kafka_client import kafka_options
from callvault.settings import Settings
from schemas.codec import get_codec

T = TypeVar("T")


class ControlDirectory(Generic[T]):
    schema: str  # Avro record name of the topic's values

    def __init__(self, settings: Settings, view: CompactedView[T]) -> None:
        self._settings = settings
        self._view = view
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> Self:
        await self._view.start()
        self._producer = AIOKafkaProducer(
            **kafka_options(self._settings), acks="all", enable_idempotence=True
        )
        try:
            await self._producer.start()
        except KafkaError as exc:
            await self._view.stop()
            raise KafkaUnavailable(f"cannot reach Kafka: {exc}") from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._producer is not None:
            await self._producer.stop()
        await self._view.stop()

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError(f"{type(self).__name__} used outside 'async with'")
        return self._producer

    async def _put(self, key: str, record: dict[str, Any]) -> None:
        """Write one control record and wait until this directory's view shows it."""
        value = get_codec().encode(self.schema, record)
        try:
            sent = await self.producer.send_and_wait(
                self._view.topic, key=key.encode(), value=value
            )
        except KafkaError as exc:
            raise KafkaUnavailable(f"could not write {self.schema}: {exc}") from exc
        await self._view.wait_applied(sent.partition, sent.offset)

    async def _delete(self, key: str) -> None:
        """Write a tombstone for ``key`` and wait until this directory's view has dropped it.

        A tombstone (null value), not a "deleted" flag, when nothing about the key must
        outlive it: compaction removes the key from the log within ``max.compaction.lag.ms``.
        """
        try:
            sent = await self.producer.send_and_wait(self._view.topic, key=key.encode(), value=None)
        except KafkaError as exc:
            raise KafkaUnavailable(f"could not delete {self.schema} {key!r}: {exc}") from exc
        await self._view.wait_applied(sent.partition, sent.offset)
