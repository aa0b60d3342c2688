"""The sink-side batch handlers behind the agents (the sealing side is :mod:`streams.sealers`).
Each returns only after its outputs are durable; the agent acknowledges the batch's offsets after
that, never before."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from faust.types import EventT

from callvault.audit import audit_event
from schemas.codec import get_codec
from schemas.errors import SchemaDecodeError
from sinks.clickhouse.calls import CallsSink
from sinks.clickhouse.rows import RowSink
from sinks.errors import ResidencyViolation, SinkError, SinkRejected
from streams.retry import retry_transient
from streams.runtime import Runtime

DeadLetterFn = Callable[[EventT, str, Exception], Awaitable[Awaitable[Any]]]


def another_regions_audit(rec: Mapping[str, Any], region: str) -> bool:
    """``audit.events`` is one topic for every region (its events hold ids and counts, never
    personal content). Each region's consumers take their own region's events and region-less
    ones and pass over the rest: refusing them would emit a refusal event of this region, which
    the other region would refuse in turn, forever."""
    return rec.get("region") is not None and rec["region"] != region


async def not_reported(_event: EventT, _reason: str, _exc: Exception) -> Awaitable[Any]:
    """The dead-letter function of a stage whose bad input another stage on the same batch
    already dead-letters: each bad record is reported once."""
    return asyncio.sleep(0)


async def decode_batch(
    rt: Runtime, stage: str, schema: str, events: Sequence[EventT], dead_letter: DeadLetterFn
) -> tuple[list[tuple[EventT, dict[str, Any]]], list[Awaitable[Any]]]:
    """Decode a batch: (event, record) pairs, and the dead letters (reason ``undecodable``) of
    what could not be decoded, still to be awaited before the batch is acknowledged."""
    codec = get_codec()
    decoded: list[tuple[EventT, dict[str, Any]]] = []
    pending: list[Awaitable[Any]] = []
    for event in events:
        rt.metrics.records_in.labels(stage).inc()
        try:
            if event.message.value is None:
                raise SchemaDecodeError("record has no value")
            decoded.append((event, codec.decode(schema, event.message.value)))
        except SchemaDecodeError as exc:
            pending.append(await dead_letter(event, "undecodable", exc))
    return decoded, pending


async def refuse_other_region(
    rt: Runtime,
    stage: str,
    sink_region: str,
    event: EventT,
    rec: Mapping[str, Any],
    *,
    topic: str | None = None,
    keep_value: bool = True,
) -> list[Awaitable[Any]]:
    """A record of another region reached a region-bound sink: count, audit, dead-letter.

    The refusal happened here, so it is an event of the sink's region (and so is never itself
    refused by this region's audit log). Returns the sends to await before acknowledging.
    """
    rt.metrics.cross_region.labels(sink_region, rec["region"]).inc()
    refusal = audit_event(
        "residency.refused", actor_kind="SERVICE", actor_id=f"sink:{stage}", outcome="DENIED",
        workspace_id=rec["workspace_id"], region=sink_region,
        target=f"call:{rec.get('call_id') or rec.get('event_id')}",
        details={"sink_region": sink_region, "record_region": rec["region"]},
    )  # fmt: skip
    error = ResidencyViolation(
        f"record of region {rec['region']!r} refused by the {sink_region!r} sink"
    )
    return [
        await rt.audit(refusal),
        await rt.dead_letter(
            event, stage=stage, reason="residency", error=error, topic=topic,
            keep_value=keep_value,
        ),
    ]  # fmt: skip


class AnalyticsWriter:
    """A sealed (or audit) topic -> a region-bound ClickHouse sink: ``sealed.metadata`` ->
    calls/call_events/tool_invocations, ``sealed.transcript`` -> transcripts, ``audit.events``
    -> audit_log. Sealed records of another region are refused, audited and dead-lettered; audit
    events of another region are passed over (see :func:`another_regions_audit`)."""

    def __init__(
        self, rt: Runtime, *, stage: str = "analytics.calls", schema: str = "SealedCallEvent",
        sink: type[RowSink] = CallsSink,
    ) -> None:  # fmt: skip
        self.rt = rt
        self.stage, self.schema = stage, schema
        self.sink = sink(rt.clickhouse, rt.settings.region)
        # transcript dead letters go with the other content ones, without the (sealed) text
        content = schema == "SealedTranscriptSegment"
        self._dead_topic = rt.topics.name("deadletter.transcript") if content else None
        self._keep_value = not content

    async def handle(self, events: Sequence[EventT]) -> None:
        rt = self.rt
        started = time.perf_counter()
        decoded, pending = await decode_batch(rt, self.stage, self.schema, events, self._dead)
        accepted: list[tuple[EventT, dict[str, Any]]] = []
        erased = await self._erased_calls(decoded)
        for event, rec in decoded:
            if self.schema == "AuditEvent" and another_regions_audit(rec, self.sink.region):
                rt.metrics.records_skipped.labels(self.stage, "other_region").inc()
                continue
            if (rec.get("workspace_id"), rec.get("call_id")) in erased:
                # sealed before its call was shredded, consumed after: no row may come back
                rt.metrics.content_dropped.labels(self.stage, "erased").inc()
                continue
            try:
                self.sink.add(rec)
                accepted.append((event, rec))
            except ResidencyViolation:
                pending += await refuse_other_region(
                    rt, self.stage, self.sink.region, event, rec, topic=self._dead_topic,
                    keep_value=self._keep_value,
                )  # fmt: skip
        try:
            await self._flush()
        except SinkRejected:
            # The store refused the batch as invalid: find the offending records one by one so
            # the good ones still land and only the bad ones are dead-lettered.
            self.sink.clear()
            for event, rec in accepted:
                self.sink.add(rec)
                try:
                    await self._flush()
                except SinkRejected as exc:
                    self.sink.clear()
                    pending.append(
                        await rt.dead_letter(
                            event, stage=self.stage, reason="rejected_by_store", error=exc
                        )
                    )
        rt.metrics.records_out.labels(self.stage).inc(len(accepted))
        await rt.deliver(pending, self.stage)
        rt.metrics.batch_seconds.labels(self.stage).observe(time.perf_counter() - started)

    async def _erased_calls(
        self, decoded: Sequence[tuple[EventT, Mapping[str, Any]]]
    ) -> set[tuple[str, str]]:
        """Calls of this batch whose keys were shredded (expired or erased) or whose workspace was
        erased; from the live views, no I/O. Audit events carry no call."""
        if self.schema == "AuditEvent":
            return set()
        calls = {(rec["workspace_id"], rec["call_id"]) for _, rec in decoded}
        out = set()
        for ws, call in calls:
            policy = self.rt.workspaces.get(ws)
            if policy is not None and policy.deleted:  # erased workspace: nothing may come back
                out.add((ws, call))
                continue
            records = await self.rt.keys.store.by_call(ws, call)
            if any(r["scope"] == "CALL" and r["destroyed"] for r in records):
                out.add((ws, call))
        return out

    async def _dead(self, event: EventT, reason: str, exc: Exception) -> Awaitable[Any]:
        return await self.rt.dead_letter(
            event, stage=self.stage, reason=reason, error=exc, topic=self._dead_topic,
            keep_value=self._keep_value,
        )  # fmt: skip

    async def _flush(self) -> None:
        await retry_transient(
            self.sink.flush,
            is_transient=lambda e: isinstance(e, SinkError) and e.retriable,
            max_backoff_s=self.rt.settings.worker.retry_max_backoff_s,
            what=self.stage,
            on_retry=lambda _e: self.rt.metrics.sink_retries.labels(self.stage).inc(),
        )
