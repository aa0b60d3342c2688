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
from urllib.parse import quote, unquote, urlsplit, urlunsplit

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


def _query_and_close(client: Client, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    try:
        result = client.query(sql)
        return list(result.column_names), [tuple(r) for r in result.result_rows]
    finally:
        with contextlib.suppress(Exception):
            client.close()


class ClickHouse:
    """A client plus the single thread it is driven from.

    ``isolated=True`` (the worker) opens an embedded engine under Callvault's access config, so
    :meth:`query_scoped` sessions are confined to one workspace by the engine itself (see
    :mod:`sinks.clickhouse.isolation`); this handle itself is the admin scope.
    """

    def __init__(
        self, dsn: str, database: str, *, isolated: bool = False,
        workspace_secret: bytes | None = None,
    ) -> None:  # fmt: skip
        self.database = database
        self._dsn = dsn
        self._isolated = isolated
        self._workspace_secret = workspace_secret
        self._provisioned: set[str] = set()
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
        if not self.embedded:
            return await self._query_as_workspace_user(workspace_id, sql)
        if not self._isolated:
            raise SinkRejected("workspace-scoped queries need the engine's access config")

        def _q(admin: Client) -> tuple[list[str], list[tuple[Any, ...]]]:
            scoped = open_client(
                self._dsn, config_file=self._config,
                settings={"log_comment": comment, "readonly": 1},
            )  # fmt: skip
            return _query_and_close(scoped, sql)

        return await self.run(_q)

    async def _query_as_workspace_user(
        self, workspace_id: str, sql: str
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Server: connect as the workspace's own user (created on first use), whose grants and
        row policies the server enforces (see :mod:`sinks.clickhouse.isolation`)."""
        if self._workspace_secret is None:
            raise SinkRejected(
                "workspace-scoped queries on a server need clickhouse.workspace_secret"
            )
        password = isolation.server_password(self._workspace_secret, workspace_id)
        url = urlsplit(self._dsn)
        if workspace_id not in self._provisioned:
            statements = isolation.server_statements(
                self.database, workspace_id, password, unquote(url.username or "default")
            )

            def provision(admin: Client) -> None:
                for statement in statements:
                    admin.command(statement)

            await self.run(provision)
            self._provisioned.add(workspace_id)
        host = url.hostname or "localhost"
        netloc = f"{quote(isolation.server_user(workspace_id))}:{password}@{host}"
        dsn = urlunsplit(url._replace(netloc=netloc + (f":{url.port}" if url.port else "")))

        def _q(_admin: Client) -> tuple[list[str], list[tuple[Any, ...]]]:
            return _query_and_close(open_client(dsn), sql)

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
