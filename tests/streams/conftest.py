"""Per-test isolation on the shared stack: own topic prefix, own chDB directory, own web port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from callvault.control.workspaces import WorkspaceDirectory
from callvault.settings import Settings
from callvault.topics import ensure_topics
from callvault.worker_process import WorkerProcess
from streams.app import app_id
from tests.conftest import topic_prefix
from tests.ports import free_port


def isolated_settings(base: Settings, tmp: Path, **worker: object) -> Settings:
    prefix = topic_prefix("t")
    return base.model_copy(
        update={
            "home": tmp / "home",
            "kafka": base.kafka.model_copy(update={"topic_prefix": prefix}),
            "s3": base.s3.model_copy(update={"key_prefix": prefix.replace(".", "/")}),
            "clickhouse": base.clickhouse.model_copy(
                update={"dsn": __import__("pydantic").SecretStr(f"chdb://{tmp / 'chdb'}")}
            ),
            "worker": base.worker.model_copy(update={"web_port": free_port(), **worker}),
        }
    )


@pytest.fixture
async def slice_settings(stack_settings: Settings, tmp_path: Path) -> AsyncIterator[Settings]:
    settings = isolated_settings(stack_settings, tmp_path)
    await ensure_topics(settings)
    async with WorkspaceDirectory(settings) as directory:
        await directory.create("acme", region="eu", retention_days=30)
        await directory.create("globex", region="na", retention_days=30)
    yield settings


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[type]:
    started: list[WorkerProcess] = []

    def make(settings: Settings) -> WorkerProcess:
        w = WorkerProcess(settings, tmp_path / f"worker-{len(started)}.log")
        w.start()
        started.append(w)
        return w

    yield make  # type: ignore[misc]
    for w in started:
        w.stop()


def group_of(settings: Settings) -> str:
    return app_id(settings)
