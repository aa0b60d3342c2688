"""An agent API on its own port, with a publisher on the shared Kafka and an in-memory call
registry, per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from callvault.settings import Settings
from sip_ingest.api import IngestApi, InMemoryCallRegistry
from sip_ingest.publish import Publisher
from tests.sip_ingest.publish.support import ensure_ingest_topics, free_port, ingest_settings

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@dataclass
class ApiEnv:
    settings: Settings
    token: str
    publisher: Publisher
    calls: InMemoryCallRegistry
    api: IngestApi
    registry: CollectorRegistry
    http: aiohttp.ClientSession

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def post(self, path: str, body: object, **kwargs: object) -> aiohttp.ClientResponse:
        headers = kwargs.pop("headers", self.auth)
        return await self.http.post(path, json=body, headers=headers, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def api_env(stack_settings: Settings, tmp_path: Path) -> AsyncIterator[ApiEnv]:
    token = f"ingest-token-{uuid.uuid4().hex}"
    settings = ingest_settings(
        stack_settings, tmp_path, api_port=free_port(), api_token=SecretStr(token)
    )
    await ensure_ingest_topics(settings)
    registry = CollectorRegistry()
    publisher = Publisher(settings, registry)
    await publisher.start()
    calls = InMemoryCallRegistry()
    api = IngestApi(settings, publisher, calls, registry, clock=lambda: NOW)
    await api.start()
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{api.port}") as http:
            yield ApiEnv(settings, token, publisher, calls, api, registry, http)
    finally:
        await api.stop()
        await publisher.stop()
