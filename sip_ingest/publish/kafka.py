"""The Kafka producer the publisher uses and how its errors are read.

A send error is either *about the record* (Kafka will refuse these bytes however often they are
sent: count a drop and move on, or it would block every record behind it forever) or *about
Kafka* (unreachable, timing out, leader moving: keep the record, spool, retry). Anything not
known to be about the record counts as being about Kafka: retrying a hopeless record costs
journal space and an alert on ``kafka_up``; dropping a good one would lose data silently.
"""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.codec import has_lz4
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    InvalidTopicError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnsupportedForMessageFormatError,
)

from callvault.kafka_client import kafka_options
from callvault.settings import Settings

_ABOUT_THE_RECORD: tuple[type[KafkaError], ...] = (
    CorruptRecordException,
    InvalidTimestampError,
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnsupportedForMessageFormatError,
)

#: Kafka's default ``message.max.bytes`` is 1 MiB plus a little; keep clear of it.
MAX_RECORD_BYTES = 1024 * 1024 - 4096


def refused_for_good(exc: BaseException) -> bool:
    """True if Kafka will never accept this record (drop it); False if it may later."""
    return isinstance(exc, _ABOUT_THE_RECORD)


def producer_broken(exc: BaseException) -> bool:
    """True if the producer instance itself must be replaced (idempotence state lost, closed).

    Retriable broker errors and timeouts keep the producer: it reconnects by itself, and keeping
    one instance keeps one ordered pipe per partition, which is what per-call order rests on.
    """
    if isinstance(exc, KafkaError):
        timeout = isinstance(exc, KafkaTimeoutError)
        return not exc.retriable and not refused_for_good(exc) and not timeout
    return False


def make_producer(
    settings: Settings, *, request_timeout_s: float, linger_ms: int
) -> AIOKafkaProducer:
    """acks=all + idempotence: a record is acknowledged only once every in-sync replica has it,
    and the broker discards the duplicates aiokafka's own retries would create."""
    return AIOKafkaProducer(
        **kafka_options(settings),
        client_id=f"callvault-ingest-{settings.ingest.node_id}",
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        # A one-second G.711 chunk is 8 KiB; the 16 KiB default would put two in a batch.
        max_batch_size=512 * 1024,
        max_request_size=1024 * 1024,
        compression_type="lz4" if has_lz4() else None,
        request_timeout_ms=int(request_timeout_s * 1000),
    )
