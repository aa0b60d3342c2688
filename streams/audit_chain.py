"""The ``audit.chain`` stage: ``audit.events`` -> ``audit.chain.<region>``, hash-chained and
signed (see :mod:`callvault.audit_chain` for the canonical form).

A region's worker chains the events of its region and the region-less ones (control-plane
actions every region's auditors see: the same rule as the ``audit_log`` table). Events of other
regions are left to their region's worker (:func:`streams.processors.another_regions_audit`);
the analytics stage on the same batch dead-letters what cannot be decoded, so this stage does not
report it again.

Continuity and idempotence: the chain's last entry gives the previous hash, the next seq and the
last chained source offset. It is read on the first batch and again whenever the chain topic's
end offset is not where this stage's own last write left it (another writer, a rebalance, a
failed batch). Source events at or below the last chained offset are skipped, so a replay of
``audit.events`` after a crash never chains an event twice. A batch returns only once its
entries are acknowledged (acks=all); before that nothing of it is acknowledged upstream.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka.errors import KafkaError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from faust.types import EventT

from callvault.audit import encode_audit
from callvault.audit_chain import (
    chain_event,
    entry_seq,
    entry_source_offset,
    public_key_id,
    signing_key,
)
from callvault.audit_store import ChainLog, UnreadableEntry
from callvault.errors import KafkaUnavailable
from streams.processors import another_regions_audit, decode_batch, not_reported
from streams.retry import retry_transient
from streams.runtime import Runtime

log = structlog.get_logger(__name__)


@dataclass
class _Head:
    prev_hash: bytes | None
    next_seq: int
    last_source_offset: int  # -1: nothing chained yet
    chain_end: int  # the chain topic's end offset after this stage's last write


class AuditChainer:
    stage = "audit.chain"

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.region = rt.settings.region
        self.topic = rt.topics.audit_chain(self.region)
        # loaded when the app is built: in production a missing key stops the worker at start
        # with a clear error, not the audit stream later
        self._key: Ed25519PrivateKey = signing_key(rt.settings)
        self._chain: ChainLog | None = None
        self._head: _Head | None = None

    async def _open(self) -> ChainLog:
        if self._chain is None:
            log.info(
                "audit_chain_open", topic=self.topic,
                public_key_id=public_key_id(self._key.public_key()),
            )  # fmt: skip
            chain = ChainLog(self.rt.settings, self.region)
            await chain.__aenter__()
            self._chain = chain
        return self._chain

    async def _current_head(self) -> _Head:
        chain = await self._open()
        end = await chain.end_offset()
        if self._head is not None and self._head.chain_end == end:
            return self._head
        if self._head is not None:
            log.warning("audit_chain_moved", topic=self.topic, expected_end=self._head.chain_end,
                        end=end)  # fmt: skip
        try:
            last = await chain.last()
        except UnreadableEntry:
            log.critical("audit_chain_tail_unreadable", topic=self.topic)
            raise
        if last is None:
            head = _Head(None, 0, -1, end)
        else:
            offset, rec = last
            seq, source = entry_seq(rec), entry_source_offset(rec)
            if rec.get("hash") is None or seq is None or source is None:
                log.critical("audit_chain_tail_invalid", topic=self.topic, offset=offset)
                raise UnreadableEntry(offset, ValueError("last entry has no hash or chain.seq"))
            head = _Head(bytes(rec["hash"]), seq + 1, source, end)
        self._head = head
        return head

    async def handle(self, events: Sequence[EventT]) -> None:
        rt = self.rt
        started = time.perf_counter()
        decoded, pending = await decode_batch(rt, self.stage, "AuditEvent", events, not_reported)
        try:
            head = await retry_transient(
                self._current_head,
                is_transient=_transient,
                max_backoff_s=rt.settings.worker.retry_max_backoff_s,
                what=self.stage,
                on_retry=lambda _e: rt.metrics.sink_retries.labels(self.stage).inc(),
            )
            prev_hash, seq, last_source = head.prev_hash, head.next_seq, head.last_source_offset
            sends: list[Awaitable[Any]] = []
            for event, rec in decoded:
                offset = event.message.offset
                if offset <= last_source:
                    continue  # chained before (a replay after a crash or rebalance)
                if another_regions_audit(rec, self.region):
                    continue
                entry = chain_event(
                    rec, prev_hash=prev_hash, seq=seq, source_offset=offset, key=self._key
                )
                key, value = encode_audit(entry)
                sends.append(await rt.send(self.topic, key, value))
                prev_hash, seq, last_source = entry["hash"], seq + 1, offset
            await rt.deliver([*pending, *sends], self.stage)
            chain_end = head.chain_end
            if sends:
                chain_end = (await sends[-1]).offset + 1
            # events of other regions still advance the replay mark: nothing to chain there
            for event, _ in decoded:
                last_source = max(last_source, event.message.offset)
            self._head = _Head(prev_hash, seq, last_source, chain_end)
        except BaseException:
            self._head = None  # re-read the chain's tail before the retry of this batch
            raise
        rt.metrics.records_out.labels(self.stage).inc(len(sends))
        rt.metrics.batch_seconds.labels(self.stage).observe(time.perf_counter() - started)

    async def close(self) -> None:
        if self._chain is not None:
            await self._chain.__aexit__(None, None, None)
            self._chain = None


def _transient(exc: BaseException) -> bool:
    """Kafka trouble (a missing chain topic too: `callvault topics ensure` creates it) pauses
    the audit stream until it is over; a chain that cannot be continued does not."""
    return isinstance(exc, KafkaUnavailable | KafkaError)
