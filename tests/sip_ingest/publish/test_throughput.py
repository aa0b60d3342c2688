"""How fast publish() takes records, and how fast they reach Kafka (figures printed with -s).

The floors are an order of magnitude under what a developer machine measures, so they catch a
regression (an fsync or a lock on the hot path), not a slow CI box. Needed: 1000 two-leg calls
publish about 2000 audio chunks per second.
"""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from callvault.settings import Settings
from callvault.topics import Topics
from sip_ingest.publish import Publisher
from tests.sip_ingest.publish.support import (
    dead_bootstrap,
    ensure_ingest_topics,
    ingest_settings,
    wait_for,
    with_bootstrap,
)

KEYS = [f"call-{i}".encode() for i in range(1000)]


def publish_many(publisher: Publisher, topic: str, n: int, value: bytes) -> float:
    """Records per second publish() accepts (the media loop's cost)."""
    t0 = time.perf_counter()
    for i in range(n):
        publisher.publish(topic, KEYS[i % 1000], value)
    return n / (time.perf_counter() - t0)


async def measure(settings: Settings, size: int, n: int) -> dict[str, float]:
    topic = Topics(settings).name("ingest.audio")
    value = bytes(size)
    figures = {}

    healthy = Publisher(settings, CollectorRegistry())
    await healthy.start()
    await wait_for(lambda: healthy.status().kafka_up)
    t0 = time.perf_counter()
    figures[f"queue_{size}B"] = publish_many(healthy, topic, n, value)
    assert await healthy.flush(300)
    figures[f"kafka_{size}B"] = n / (time.perf_counter() - t0)
    await healthy.stop()

    down = Publisher(with_bootstrap(settings, dead_bootstrap()), CollectorRegistry())
    await down.start()
    await wait_for(lambda: down.status().spooling)
    figures[f"journal_{size}B"] = publish_many(down, topic, n, value)
    await down.stop()

    draining = Publisher(settings, CollectorRegistry())
    t0 = time.perf_counter()
    await draining.start()
    assert await draining.flush(300)
    figures[f"drain_{size}B"] = n / (time.perf_counter() - t0)
    await draining.stop()
    return figures


async def test_publish_throughput(stack_settings: Settings, tmp_path: Path) -> None:
    settings = ingest_settings(
        stack_settings, tmp_path, queue_max=1_000_000, journal_max_bytes=2 * 1024**3
    )
    await ensure_ingest_topics(settings)
    figures = {**await measure(settings, 200, 100_000), **await measure(settings, 8000, 20_000)}
    print("records/s:", {k: round(v) for k, v in figures.items()})
    assert figures["queue_200B"] > 100_000
    assert figures["journal_8000B"] > 10_000
    assert figures["kafka_8000B"] > 2_000
    assert figures["drain_8000B"] > 2_000
