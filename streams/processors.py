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
from sinks.errors import ResidencyViolation, SinkError, SinkRejected
from streams.retry import retry_transient
from streams.runtime import Runtime

ANALYTICS_STAGE = "analytics.calls"


class AnalyticsWriter:
    """sealed.metadata -> ClickHouse ``calls`` + ``call_events`` (this worker's region only)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._codec = get_codec()
        self.sink = CallsSink(rt.clickhouse, rt.settings.region)

    async def handle(self, events: Sequence[EventT]) -> None:
        rt = self.rt
        pending: list[Awaitable[Any]] = []
        started = time.perf_counter()
        accepted: list[tuple[EventT, dict[str, Any]]] = []
        for event in events:
            rt.metrics.records_in.labels(ANALYTICS_STAGE).inc()
            try:
                if event.message.value is None:
                    raise SchemaDecodeError("record has no value")
                rec = self._codec.decode("SealedCallEvent", event.message.value)
                self.sink.add(rec)
                accepted.append((event, rec))
            except SchemaDecodeError as exc:
                pending.append(
                    await rt.dead_letter(
                        event, stage=ANALYTICS_STAGE, reason="undecodable", error=exc
                    )
                )
            except ResidencyViolation as exc:
                rt.metrics.cross_region.labels(self.sink.region, rec["region"]).inc()
                refusal = audit_event(
                    "residency.refused", actor_kind="SERVICE", actor_id=f"sink:{ANALYTICS_STAGE}",
                    outcome="DENIED", workspace_id=rec["workspace_id"], region=rec["region"],
                    target=f"call:{rec['call_id']}",
                    details={"sink_region": self.sink.region, "record_region": rec["region"]},
                )  # fmt: skip
                pending.append(await rt.audit(refusal))
                pending.append(
                    await rt.dead_letter(
                        event, stage=ANALYTICS_STAGE, reason="residency", error=exc
                    )
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
                            event, stage=ANALYTICS_STAGE, reason="rejected_by_store", error=exc
                        )
                    )
        rt.metrics.records_out.labels(ANALYTICS_STAGE).inc(len(accepted))
        await rt.deliver(pending, ANALYTICS_STAGE)
        rt.metrics.batch_seconds.labels(ANALYTICS_STAGE).observe(time.perf_counter() - started)

    async def _flush(self) -> None:
        await retry_transient(
            self.sink.flush,
            is_transient=lambda e: isinstance(e, SinkError) and e.retriable,
            max_backoff_s=self.rt.settings.worker.retry_max_backoff_s,
            what=ANALYTICS_STAGE,
            on_retry=lambda _e: self.rt.metrics.sink_retries.labels(ANALYTICS_STAGE).inc(),
        )
