"""Helpers shared by the publisher and API tests: isolated settings, delivery checks, and a
private Kafka broker that a test may hang, stop and restart (the shared one must stay up)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from callvault.devstack import kafka as devkafka
from callvault.errors import DevStackError
from callvault.settings import Settings
from callvault.topics import Topics, ensure_topics
from tests.conftest import topic_prefix
from tests.ports import free_port

INGEST_TOPICS = ("ingest.audio", "ingest.metadata", "ingest.transcript")


def ingest_settings(base: Settings, tmp: Path, **ingest: Any) -> Settings:
    """Own topic prefix, own home and journal directory; ``ingest`` overrides IngestSettings."""
    prefix = topic_prefix("t")
    return base.model_copy(
        update={
            "home": tmp / "home",
            "kafka": base.kafka.model_copy(update={"topic_prefix": prefix}),
            "ingest": base.ingest.model_copy(update={"journal_dir": tmp / "journal", **ingest}),
        }
    )


def with_bootstrap(settings: Settings, bootstrap: str) -> Settings:
    return settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"bootstrap": bootstrap})}
    )


def dead_bootstrap() -> str:
    """An address where nothing listens: what a stopped broker looks like (connection refused)."""
    return f"127.0.0.1:{free_port()}"


async def ensure_ingest_topics(settings: Settings) -> None:
    topics = Topics(settings)
    await ensure_topics(settings, [topics.specs[name] for name in INGEST_TOPICS])


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def check_delivery(
    published: Sequence[tuple[bytes, bytes]],
    consumed: Iterable[Any],
    *,
    exactly_once: bool,
) -> int:
    """Assert every published (key, value) arrived and each key's records are in publish order.

    Kafka orders a key's records on its partition, so order is checked per key in offset order.
    With ``exactly_once=False`` duplicates (re-sends after an outage) are allowed, and the order
    checked is that of each record's first arrival. Returns the number of duplicates.
    """
    expected: dict[bytes, list[bytes]] = defaultdict(list)
    for key, value in published:
        expected[key].append(value)
    arrived: dict[bytes, list[bytes]] = defaultdict(list)
    for message in sorted(consumed, key=lambda m: (m.partition, m.offset)):
        arrived[message.key].append(message.value)
    assert set(arrived) == set(expected), "records arrived under keys never published"
    duplicates = 0
    for key, values in expected.items():
        got = arrived[key]
        if exactly_once:
            assert got == values, f"key {key!r}: {len(got)} arrived, {len(values)} published"
            continue
        first = list(dict.fromkeys(got))
        duplicates += len(got) - len(first)
        assert first == values, f"key {key!r}: lost or reordered records"
    return duplicates


class PrivateKafka:
    """A single-node KRaft broker owned by one test module, on its own ports and data dir.

    Outage tests hang it (SIGSTOP: connections stay open, nothing answers, as with a network
    partition or a stuck broker) or stop and restart it (connections refused). The shared test
    broker is never touched. Signals go to the pid this object started, nothing else.
    """

    def __init__(self, base: Settings, home: Path) -> None:
        self._base, self._home = base, home
        self.settings = self._on_new_ports()
        self.pid: int | None = None
        self.paused = False

    def _on_new_ports(self) -> Settings:
        port, controller = free_port(), free_port()
        return self._base.model_copy(
            update={
                "home": self._home,
                "dev": self._base.dev.model_copy(
                    update={
                        "kafka_port": port,
                        "kafka_controller_port": controller,
                        "kafka_heap": "256m",
                    }
                ),
                "kafka": self._base.kafka.model_copy(update={"bootstrap": f"127.0.0.1:{port}"}),
            }
        )

    def first_start(self) -> None:
        """Start on fresh ports, once more on others if something took a port meanwhile (other
        test sessions share this machine). Restarts keep the ports: clients know them."""
        try:
            self.start()
        except DevStackError:
            devkafka.stop(self.settings)
            self.settings = self._on_new_ports()
            self.start()

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka.bootstrap

    def start(self) -> None:
        self.pid = devkafka.start(self.settings)
        devkafka.wait_ready(self.settings, 90)

    def stop(self) -> None:
        self.resume()
        devkafka.stop(self.settings)
        self.pid = None

    def pause(self) -> None:
        assert self.pid is not None
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.paused and self.pid is not None:
            os.kill(self.pid, signal.SIGCONT)
        self.paused = False

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)
