"""Prometheus metrics of a stream worker.

A registry per worker instead of the global one: tests build several apps in one process, and a
metric registered twice in the global registry is an error.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class StreamMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.records_in = Counter(
            "callvault_records_in", "Records consumed", ["stage"], registry=self.registry
        )
        self.records_out = Counter(
            "callvault_records_out", "Records written durably", ["stage"], registry=self.registry
        )
        self.dead_letters = Counter(
            "callvault_dead_letters",
            "Records sent to a dead-letter topic",
            ["stage", "reason"],
            registry=self.registry,
        )
        self.content_dropped = Counter(
            "callvault_content_dropped",
            "Audio/transcript records not sealed on purpose (suppressed, recording off, erased)",
            ["stage", "reason"],
            registry=self.registry,
        )
        self.records_skipped = Counter(
            "callvault_records_skipped",
            "Records a stage passes over on purpose (another region's audit events)",
            ["stage", "reason"],
            registry=self.registry,
        )
        self.sink_retries = Counter(
            "callvault_sink_retries",
            "Retries of a durable write after a transient error",
            ["stage"],
            registry=self.registry,
        )
        self.cross_region = Counter(
            "callvault_cross_region_refused",
            "Records refused by a region-bound sink because they belong to another region "
            "(should stay zero)",
            ["sink_region", "record_region"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "callvault_batch_seconds",
            "Time to make one batch durable",
            ["stage"],
            registry=self.registry,
        )
