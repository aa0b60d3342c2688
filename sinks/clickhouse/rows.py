"""The shape every ClickHouse sink shares: region check, buffered rows per table, one flush.

Delivery guarantee of every subclass: **at-least-once writes, exactly-once rows after FINAL.**
A replayed record produces rows with the same sorting key and version, which ReplacingMergeTree
collapses; an identical retried batch is dropped by its deduplication token, derived from the
ids of the records in it (the same batch always gets the same token).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from sinks.clickhouse.client import ClickHouse
from sinks.errors import ResidencyViolation

Rows = dict[str, list[list[Any]]]


class RowSink(ABC):
    #: table -> column names, in insert order
    TABLES: ClassVar[dict[str, tuple[str, ...]]]

    def __init__(self, ch: ClickHouse, region: str) -> None:
        self._ch = ch
        self.region = region
        self._rows: Rows = {t: [] for t in self.TABLES}
        self._ids: list[str] = []

    def check(self, rec: Mapping[str, Any]) -> None:
        """Region-bound: a record of another region is refused (:class:`ResidencyViolation`)."""
        if rec["region"] != self.region:
            raise ResidencyViolation(
                f"record of region {rec['region']!r} refused by the {self.region!r} sink"
            )

    @abstractmethod
    def record_id(self, rec: Mapping[str, Any]) -> str: ...

    @abstractmethod
    def rows(self, rec: Mapping[str, Any]) -> Rows: ...

    def add(self, rec: Mapping[str, Any]) -> None:
        self.check(rec)
        rows = self.rows(rec)
        self._ids.append(self.record_id(rec))
        for table, table_rows in rows.items():
            self._rows[table].extend(table_rows)

    def __len__(self) -> int:
        return len(self._ids)

    async def flush(self) -> None:
        """Write the buffer; on error the buffer is kept so the caller can retry the same batch."""
        if not self._ids:
            return
        token = hashlib.sha256("\n".join(self._ids).encode()).hexdigest()
        for table, columns in self.TABLES.items():
            if self._rows[table]:
                await self._ch.insert(
                    table,
                    self._rows[table],
                    columns,
                    settings={"insert_deduplication_token": f"{token}:{table}"},
                )
        self.clear()

    def clear(self) -> None:
        for rows in self._rows.values():
            rows.clear()
        self._ids.clear()
