"""Prometheus metrics of the publishing path.

Registered in a registry the node passes in (not the global one): tests run several publishers
in one process, and the node serves one registry on its ``/metrics`` endpoint.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

#: Every reason a record can be dropped. Listed up front so each series exists (at 0) from the
#: start: an alert on ``increase(...[5m]) > 0`` needs the series before the first drop.
DROP_REASONS = (
    "journal_full",  # Kafka unreachable for long enough that the disk budget ran out
    "journal_error",  # the journal disk failed (I/O error, permissions)
    "too_large",  # the record exceeds what Kafka accepts
    "kafka_rejected",  # Kafka refused this record for good (authorization, invalid topic, ...)
    "encode_error",  # the caller's record did not fit its Avro schema
    "not_running",  # publish() before start() or after stop()
)


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.published = Counter(
            "callvault_ingest_published",
            "Records acknowledged by Kafka (acks=all)",
            ["topic"],
            registry=registry,
        )
        self.spooled = Counter(
            "callvault_ingest_spooled",
            "Records written to the disk journal because Kafka was failing or the queue was full",
            registry=registry,
        )
        self.dropped = Counter(
            "callvault_ingest_dropped",
            "Records lost, by reason (every loss is counted here and logged)",
            ["reason"],
            registry=registry,
        )
        for reason in DROP_REASONS:
            self.dropped.labels(reason)
        self.journal_bytes = Gauge(
            "callvault_ingest_journal_bytes",
            "Bytes of journal segment files on disk",
            registry=registry,
        )
        self.queue_depth = Gauge(
            "callvault_ingest_queue_depth",
            "Records waiting in memory for Kafka",
            registry=registry,
        )
        self.kafka_up = Gauge(
            "callvault_ingest_kafka_up",
            "1 while Kafka acknowledges writes, 0 while records are being spooled",
            registry=registry,
        )
        self.journal_corruption = Counter(
            "callvault_ingest_journal_corruption",
            "Unreadable journal regions found and skipped (torn tail after a crash, bad checksum)",
            registry=registry,
        )
        self.journal_discarded_bytes = Counter(
            "callvault_ingest_journal_discarded_bytes",
            "Bytes of unreadable journal regions that were skipped",
            registry=registry,
        )
