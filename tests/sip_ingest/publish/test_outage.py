"""Real Kafka outages, on a private broker this module owns (the shared one must stay up).

Why a private broker and not a proxy: Kafka clients bootstrap once and then connect to the
addresses the broker advertises, so a TCP proxy in front of the shared broker is bypassed after
the first metadata request, and a proxy that rewrites metadata would be a Kafka implementation
of its own. A broker of our own can fail for real, the two ways brokers fail:

- hung (SIGSTOP): TCP connections stay open and nothing answers, like a partition or a stuck
  JVM; only timeouts reveal it;
- gone (stopped, then started again on the same data): connections are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from callvault.settings import Settings
from callvault.topics import Topics
from sip_ingest.publish import DROP_REASONS, Publisher, PublisherOptions
from tests.kafka_read import read_all
from tests.sip_ingest.publish.support import (
    PrivateKafka,
    check_delivery,
    ensure_ingest_topics,
    ingest_settings,
    with_bootstrap,
)

OPTIONS = PublisherOptions(delivery_timeout_s=1.5, retry_backoff_max_s=1.0)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def on_broker(stack_settings: Settings, tmp: Path, broker: PrivateKafka) -> Settings:
    settings = with_bootstrap(ingest_settings(stack_settings, tmp), broker.bootstrap)
    await ensure_ingest_topics(settings)
    return settings


class Feed:
    """A call-like producer: a record every millisecond or so for 10 calls, from the loop."""

    def __init__(self, publisher: Publisher, topic: str) -> None:
        self.publisher, self.topic = publisher, topic
        self.sent: list[tuple[bytes, bytes]] = []
        self.refused = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        i = 0
        while True:
            key, value = f"call-{i % 10}".encode(), f"{i:08d}".encode() + bytes(200)
            if self.publisher.publish(self.topic, key, value):
                self.sent.append((key, value))
            else:
                self.refused += 1
            i += 1
            await asyncio.sleep(0.001)

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def run_outage(settings: Settings, outage, recover) -> tuple[Feed, CollectorRegistry, dict]:  # type: ignore[no-untyped-def,type-arg]
    topic = Topics(settings).name("ingest.audio")
    registry = CollectorRegistry()
    publisher = Publisher(settings, registry, options=OPTIONS)
    await publisher.start()
    feed = Feed(publisher, topic)
    feed.start()
    await asyncio.sleep(1.0)
    before = len(feed.sent)
    await outage()
    await asyncio.sleep(4.0)
    seen = {
        "kafka_up_during": sample(registry, "callvault_ingest_kafka_up"),
        "spooled_during": sample(registry, "callvault_ingest_spooled_total"),
        "journal_bytes_during": sample(registry, "callvault_ingest_journal_bytes"),
    }
    t_recover = time.monotonic()
    await recover()
    await asyncio.sleep(1.0)
    await feed.stop()
    assert await publisher.flush(60)
    seen["drained_after_s"] = time.monotonic() - t_recover
    await publisher.stop()
    assert before > 0 and len(feed.sent) > before
    assert feed.refused == 0
    assert all(
        sample(registry, "callvault_ingest_dropped_total", reason=r) == 0 for r in DROP_REASONS
    )
    seen["duplicates"] = check_delivery(
        feed.sent, await read_all(settings, topic), exactly_once=False
    )
    seen["records"] = len(feed.sent)
    assert list(settings.ingest_journal_dir.glob("*.seg")) == []
    return feed, registry, seen


async def test_hung_broker_mid_stream_loses_nothing_and_keeps_order(
    stack_settings: Settings, tmp_path: Path, broker: PrivateKafka
) -> None:
    settings = await on_broker(stack_settings, tmp_path, broker)

    async def outage() -> None:
        broker.pause()

    async def recover() -> None:
        broker.resume()

    _, _, seen = await run_outage(settings, outage, recover)
    print("hung broker:", seen)
    assert seen["kafka_up_during"] == 0
    assert seen["spooled_during"] > 0 and seen["journal_bytes_during"] > 0


async def test_broker_restart_mid_stream_loses_nothing_and_keeps_order(
    stack_settings: Settings, tmp_path: Path, broker: PrivateKafka
) -> None:
    settings = await on_broker(stack_settings, tmp_path, broker)

    async def outage() -> None:
        await broker.astop()

    async def recover() -> None:
        await broker.astart()

    _, _, seen = await run_outage(settings, outage, recover)
    print("restarted broker:", seen)
    assert seen["kafka_up_during"] == 0
    assert seen["spooled_during"] > 0


async def test_broker_down_at_boot_then_up_delivers_everything_once_in_order(
    stack_settings: Settings, tmp_path: Path, broker: PrivateKafka
) -> None:
    settings = await on_broker(stack_settings, tmp_path, broker)
    topic = Topics(settings).name("ingest.metadata")
    await broker.astop()
    registry = CollectorRegistry()
    publisher = Publisher(settings, registry, options=OPTIONS)
    t0 = time.monotonic()
    await publisher.start()
    assert time.monotonic() - t0 < 1, "start must not wait for Kafka"
    sent = [(f"call-{i % 10}".encode(), f"{i:08d}".encode()) for i in range(3000)]
    for i, record in enumerate(sent):
        assert publisher.publish(topic, *record)
        if i % 100 == 0:
            await asyncio.sleep(0.01)
    assert publisher.status().spooling and not publisher.status().kafka_up
    await broker.astart()
    assert await publisher.flush(60)
    assert sample(registry, "callvault_ingest_kafka_up") == 1
    await publisher.stop()
    check_delivery(sent, await read_all(settings, topic), exactly_once=True)
    assert sample(registry, "callvault_ingest_spooled_total") == 3000
