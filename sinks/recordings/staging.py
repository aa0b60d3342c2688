"""Work in progress of the recordings sink, kept in the region's bucket instead of a worker's
memory or disk.

Why the bucket: a call can last an hour, far longer than a stream may hold Kafka offsets back,
and the partitions of a call can move to another worker mid-call (rebalance, crash). Staging each
batch's records of a call as one object, *still sealed exactly as they were on Kafka*, makes the
batch durable before its offsets are committed, leaves nothing readable at rest (shredding the
call key kills staging too), and lets whichever worker sees the call end finish it.

Object bodies are the records' bytes, each framed ``u32be length || bytes``. The key names the
partition and first offset, so staging the same batch again after a crash overwrites itself; a
batch cut differently after a restart overlaps an older object, and readers drop the duplicates
(audio by leg and seq, transcript by segment id).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sinks.errors import SinkRejected
from sinks.objects import layout
from sinks.objects.layout import Stream
from sinks.objects.store import ObjectInfo, ObjectStore

_LEN = struct.Struct(">I")


def frame(values: Iterable[bytes]) -> bytes:
    out = bytearray()
    for value in values:
        out += _LEN.pack(len(value))
        out += value
    return bytes(out)


def unframe(body: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(body):
        if pos + 4 > len(body):
            raise SinkRejected("staged object is truncated")
        (n,) = _LEN.unpack_from(body, pos)
        pos += 4
        if pos + n > len(body):
            raise SinkRejected("staged object is truncated")
        out.append(body[pos : pos + n])
        pos += n
    return out


@dataclass(frozen=True)
class EndedCall:
    """What the sink needs from a call's ENDED event to finish its artifacts (no content)."""

    workspace_id: str
    call_id: str
    region: str
    call_started_at: datetime
    ended_at: datetime | None
    duration_ms: int | None
    expires_at: datetime
    #: chunks each leg published; None when unknown (older ingest): finish after the settle time
    audio_chunks: dict[str, int] | None
    staged_at: datetime

    @classmethod
    def from_event(cls, event: Mapping[str, Any], *, now: datetime) -> EndedCall:
        return cls(
            workspace_id=event["workspace_id"], call_id=event["call_id"], region=event["region"],
            call_started_at=event["call_started_at"], ended_at=event.get("ended_at"),
            duration_ms=event.get("duration_ms"), expires_at=event["expires_at"],
            audio_chunks=dict(event["audio_chunks"]) if event.get("audio_chunks") else None,
            staged_at=now,
        )  # fmt: skip

    def to_json(self) -> bytes:
        doc = asdict(self)
        for name in ("call_started_at", "ended_at", "expires_at", "staged_at"):
            if doc[name] is not None:
                doc[name] = doc[name].isoformat()
        return json.dumps(doc, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> EndedCall:
        doc = json.loads(raw)
        for name in ("call_started_at", "ended_at", "expires_at", "staged_at"):
            if doc.get(name) is not None:
                doc[name] = datetime.fromisoformat(doc[name]).astimezone(UTC)
        return cls(**doc)


class Staging:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def stage(
        self,
        workspace_id: str,
        call_id: str,
        stream: Stream,
        partition: int,
        first_offset: int,
        values: Sequence[bytes],
        expires_at: datetime,
    ) -> None:
        key = layout.staged_key(workspace_id, call_id, stream, partition, first_offset)
        await self.store.put(key, frame(values), metadata={"cv-expires-at": expires_at.isoformat()})

    async def mark_ended(self, ended: EndedCall) -> None:
        await self.store.put(
            layout.ended_key(ended.workspace_id, ended.call_id),
            ended.to_json(),
            metadata={"cv-expires-at": ended.expires_at.isoformat()},
            content_type="application/json",
        )

    async def ended(self, workspace_id: str, call_id: str) -> EndedCall | None:
        key = layout.ended_key(workspace_id, call_id)
        if await self.store.head(key) is None:
            return None
        return EndedCall.from_json(await self.store.get(key))

    async def objects(self, workspace_id: str, call_id: str, stream: Stream) -> list[ObjectInfo]:
        prefix = f"{layout.staging_prefix(workspace_id, call_id)}{stream}/"
        return sorted(await self.store.list_objects(prefix), key=lambda o: o.key)

    async def records(self, key: str) -> list[bytes]:
        return unframe(await self.store.get(key))

    async def calls(self) -> list[tuple[str, str]]:
        """Every (workspace, call) with something staged: the restart/rebalance recovery scan."""
        out = []
        for ws_prefix in await self.store.prefixes(layout.STAGING):
            for call_prefix in await self.store.prefixes(ws_prefix):
                parsed = layout.parse_staging_prefix(call_prefix)
                if parsed is not None:
                    out.append(parsed)
        return out

    async def clear(self, workspace_id: str, call_id: str) -> list[ObjectInfo]:
        return await self.store.delete_prefix(layout.staging_prefix(workspace_id, call_id))
