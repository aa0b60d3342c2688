"""Per-test isolation on the shared stack (own topic prefix and journal), plus the private broker
for outage tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from callvault.settings import Settings
from tests.sip_ingest.publish.support import PrivateKafka, ensure_ingest_topics, ingest_settings


@pytest.fixture
async def ingest_env(stack_settings: Settings, tmp_path: Path) -> AsyncIterator[Settings]:
    settings = ingest_settings(stack_settings, tmp_path)
    await ensure_ingest_topics(settings)
    yield settings


@pytest.fixture(scope="module")
def private_kafka(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrivateKafka]:
    broker = PrivateKafka(stack_settings, tmp_path_factory.mktemp("private-kafka"))
    broker.first_start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
async def broker(private_kafka: PrivateKafka) -> AsyncIterator[PrivateKafka]:
    """The private broker, running and responsive at the start of each test."""
    private_kafka.resume()
    if private_kafka.pid is None:
        await private_kafka.astart()
    yield private_kafka
    private_kafka.resume()
