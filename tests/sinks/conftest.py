"""The test process's own analytics store.

chDB allows one engine path per process, so the whole pytest session shares this one directory;
tests keep apart by using their own database names.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sinks.clickhouse.client import ClickHouse


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("chdb")


@pytest.fixture
async def clickhouse(chdb_dir: Path) -> AsyncIterator[ClickHouse]:
    ch = ClickHouse(f"chdb://{chdb_dir}", f"t_{uuid.uuid4().hex[:10]}")
    try:
        yield ch
    finally:
        await ch.command(f"DROP DATABASE IF EXISTS {ch.database}")
