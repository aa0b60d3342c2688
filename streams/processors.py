"""The sink-side batch handlers behind the agents (the sealing side is :mod:`streams.sealers`).
Each returns only after its outputs are durable; the agent acknowledges the batch's offsets after
that, never before."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence
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


class AnalyticsWriter:
    """A sealed (or audit) topic -> a region-bound ClickHouse sink: ``sealed.metadata`` ->
    calls/call_events/tool_invocations, ``sealed.transcript`` -> transcripts, ``audit.events``
    -> audit_log. Records of another region are refused, audited and dead-lettered."""

    def __init__(
        self, rt: Runtime, *, stage: str = "analytics.calls", schema: str = "SealedCallEvent",
        sink: type[RowSink] = CallsSink,
    ) -> None:  # fmt: skip
        self.rt = rt
        self._codec = get_codec()
        self.stage, self.schema = stage, schema
        self.sink = sink(rt.clickhouse, rt.settings.region)

    async def handle(self, events: Sequence[EventT]) -> None:
        rt = self.rt
        pending: list[Awaitable[Any]] = []
        started = time.perf_counter()
        accepted: list[tuple[EventT, dict[str, Any]]] = []
        for event in events:
            rt.metrics.records_in.labels(self.stage).inc()
            try:
                if event.message.value is None:
                    raise SchemaDecodeError("record has no value")
                rec = self._codec.decode(self.schema, event.message.value)
                self.sink.add(rec)
                accepted.append((event, rec))
            except SchemaDecodeError as exc:
                pending.append(
                    await rt.dead_letter(event, stage=self.stage, reason="undecodable", error=exc)
                )
            except ResidencyViolation as exc:
                rt.metrics.cross_region.labels(self.sink.region, rec["region"]).inc()
                # the refusal happened here: it is an event of the sink's region (and so is
                # never itself refused by this region's audit log)
                refusal = audit_event(
                    "residency.refused", actor_kind="SERVICE", actor_id=f"sink:{self.stage}",
                    outcome="DENIED", workspace_id=rec["workspace_id"], region=self.sink.region,
                    target=f"call:{rec.get('call_id') or rec.get('event_id')}",
                    details={"sink_region": self.sink.region, "record_region": rec["region"]},
                )  # fmt: skip
                pending.append(await rt.audit(refusal))
                pending.append(
                    await rt.dead_letter(event, stage=self.stage, reason="residency", error=exc)
                )
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

    async def _flush(self) -> None:
        await retry_transient(
            self.sink.flush,
            is_transient=lambda e: isinstance(e, SinkError) and e.retriable,
            max_backoff_s=self.rt.settings.worker.retry_max_backoff_s,
            what=self.stage,
            on_retry=lambda _e: self.rt.metrics.sink_retries.labels(self.stage).inc(),
        )
