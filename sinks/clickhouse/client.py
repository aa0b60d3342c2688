"""Open a ClickHouse client from a DSN, chDB or server alike.

chDB embeds the engine and locks its directory to one process (and allows one engine path per
process), so in the embedded setup exactly one service — the stream worker — owns it and serves
queries for everybody else. All calls go through one worker thread: the engine is not safe to
drive from several threads at once, and keeping inserts off the event loop keeps the Kafka
consumer heartbeating while a large insert runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError, OperationalError

from sinks.clickhouse import isolation
from sinks.errors import SinkRejected, SinkUnavailable

T = TypeVar("T")

#: ClickHouse error codes meaning "the request is wrong", not "the server is unwell".
_REJECTION_CODES = {
    "Code: 6",
    "Code: 27",
    "Code: 41",
    "Code: 53",
    "Code: 62",
    "Code: 70",
    "Code: 117",
}


def open_client(
    dsn: str, *, config_file: Path | None = None, settings: dict[str, Any] | None = None
) -> Client:
    if dsn.startswith("chdb://"):
        if config_file is None:
            return clickhouse_connect.get_client(dsn=dsn)
        return clickhouse_connect.get_client(
            dsn=dsn, chdb_options={"config-file": str(config_file)}, settings=settings or {}
        )
    if dsn.startswith(("http://", "https://", "clickhouse://", "clickhouse+http://")):
        return clickhouse_connect.get_client(dsn=dsn, compress=False)
    raise SinkRejected(f"unsupported ClickHouse DSN scheme in {dsn.split(':', 1)[0]!r}")


class ClickHouse:
    """A client plus the single thread it is driven from.

    ``isolated=True`` (the worker) opens an embedded engine under Callvault's access config, so
    :meth:`query_scoped` sessions are confined to one workspace by the engine itself (see
    :mod:`sinks.clickhouse.isolation`); this handle itself is the admin scope.
    """

    def __init__(self, dsn: str, database: str, *, isolated: bool = False) -> None:
        self.database = database
        self._dsn = dsn
        self._isolated = isolated
        self._config: Path | None = None
        self._client: Client | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")

    @property
    def embedded(self) -> bool:
        return self._dsn.startswith("chdb://")

    def _require(self) -> Client:
        if self._client is None:
            try:
                if self._isolated and self.embedded:
                    path = Path(self._dsn.removeprefix("chdb://"))
                    self._config = isolation.write_config(path, self.database)
                    client = open_client(
                        self._dsn, config_file=self._config,
                        settings={"log_comment": isolation.ADMIN},
                    )  # fmt: skip
                    grants = [str(r[0]) for r in client.query("SHOW GRANTS").result_rows]
                    isolation.verify_grants(grants)
                    self._client = client
                else:
                    self._client = open_client(self._dsn)
            except ClickHouseError as exc:
                raise SinkUnavailable(f"cannot open ClickHouse: {exc}") from exc
        return self._client

    async def query_scoped(
        self, workspace_id: str, sql: str
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run ``sql`` in a fresh session that can see only ``workspace_id``'s rows, read-only.

        Refused (never run unscoped) where the engine cannot enforce it.
        """
        comment = isolation.scope_comment(workspace_id)
        if not (self._isolated and self.embedded):
            raise SinkRejected(
                "workspace-scoped queries need the embedded engine's access config here; "
                "per-workspace server users are not set up yet"
            )

        def _q(admin: Client) -> tuple[list[str], list[tuple[Any, ...]]]:
            scoped = open_client(
                self._dsn, config_file=self._config,
                settings={"log_comment": comment, "readonly": 1},
            )  # fmt: skip
            try:
                result = scoped.query(sql)
                return list(result.column_names), [tuple(r) for r in result.result_rows]
            finally:
                with contextlib.suppress(Exception):
                    scoped.close()

        return await self.run(_q)

    async def run(self, fn: Callable[[Client], T]) -> T:
        """Run ``fn(client)`` on the ClickHouse thread, mapping driver errors to sink errors."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, fn)

    def _call(self, fn: Callable[[Client], T]) -> T:
        try:
            return fn(self._require())
        except DatabaseError as exc:
            msg = str(exc)
            if any(code in msg for code in _REJECTION_CODES):
                raise SinkRejected(msg) from exc
            raise SinkUnavailable(msg) from exc
        except (OperationalError, ClickHouseError, OSError) as exc:
            raise SinkUnavailable(str(exc)) from exc

    async def command(
        self,
        sql: str,
        settings: dict[str, Any] | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> Any:
        return await self.run(lambda c: c.command(sql, parameters=parameters, settings=settings))

    async def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        columns: Sequence[str],
        settings: dict[str, Any] | None = None,
    ) -> None:
        await self.run(
            lambda c: c.insert(
                f"{self.database}.{table}", rows, column_names=list(columns), settings=settings
            )
        )

    async def query(
        self,
        sql: str,
        settings: dict[str, Any] | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """``parameters`` bind ``{name:Type}`` placeholders: values never become SQL text."""

        def _q(c: Client) -> tuple[list[str], list[tuple[Any, ...]]]:
            result = c.query(sql, parameters=parameters, settings=settings)
            return list(result.column_names), [tuple(r) for r in result.result_rows]

        return await self.run(_q)

    async def close(self) -> None:
        if self._client is not None:
            client = self._client
            self._client = None
            with contextlib.suppress(Exception):
                await asyncio.get_running_loop().run_in_executor(self._pool, client.close)
        self._pool.shutdown(wait=False)
