"""``audit.events`` -> the SIEMs: syslog over TLS (RFC 5425, CEF or JSON), Splunk HEC, and the
``siem.ocsf`` topic (OCSF JSON, keyed by event id), each as configured in ``settings.siem``.

Delivery guarantee: **at-least-once to every enabled destination; duplicates carry the audit
event id** (syslog SD ``eventId`` / CEF ``externalId`` / JSON ``event_id``, HEC
``fields.event_id``, OCSF ``metadata.uid`` and the record key), so the SIEM can drop them.
A batch returns only after every destination took it: transient errors (a SIEM down, a network
partition) are retried forever with capped backoff, so consumption of ``audit.events`` pauses and
the offsets stay uncommitted — an outage delays events, it never loses one. A record a SIEM
*rejects* (HEC 4xx) is found by re-sending the batch one record at a time and dead-lettered to
``deadletter.siem`` with the destination in its reason; the other records and destinations still
get it. Re-delivered batches (after a crash or rebalance) reach every destination again.

Region: like the region's audit log, the fan-out forwards events of its own region and events
without a region, and passes over the others (their region's fan-out sends them; see
:func:`streams.processors.another_regions_audit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Protocol

import aiohttp
import structlog
from faust.types import EventT

from callvault.settings import SiemSettings
from sinks.errors import SinkError, SinkRejected
from sinks.siem.formats import encode_ocsf
from sinks.siem.hec import HecSink
from sinks.siem.retry import Backoff
from sinks.siem.syslog import SyslogTlsSink, client_tls_context
from streams.processors import another_regions_audit, decode_batch
from streams.retry import retry_transient
from streams.runtime import Runtime

log = structlog.get_logger(__name__)

#: what a renderer may raise on a record the schema allowed but a format cannot express
_RENDER_ERRORS = (KeyError, ValueError, TypeError)


class Destination(Protocol):
    """The sink shape the fan-out drives (``SyslogTlsSink``, ``HecSink``): buffer, then make the
    buffer durable; ``flush`` keeps the buffer when it raises."""

    def add(self, event: Mapping[str, Any]) -> None: ...
    async def flush(self) -> None: ...
    def clear(self) -> None: ...


class SiemFanout:
    """The batch handler of the ``siem.fanout`` agent (see the module docstring)."""

    stage = "siem.fanout"

    def __init__(
        self, rt: Runtime, *, destinations: Mapping[str, Destination] | None = None
    ) -> None:
        """``destinations`` (name -> sink) replaces the ones ``settings.siem`` describes."""
        self.rt = rt
        cfg = rt.settings.siem
        self._ocsf = cfg.ocsf_topic_enabled
        self._destinations: dict[str, Destination] | None = (
            dict(destinations) if destinations is not None else None
        )
        self._session: aiohttp.ClientSession | None = None
        # built now, so a missing CA or client certificate fails the worker at start
        own = destinations is None
        self._syslog_tls = (
            client_tls_context(
                cfg.syslog_ca_file, cfg.syslog_client_cert_file, cfg.syslog_client_key_file
            )
            if own and cfg.syslog_enabled
            else None
        )
        self._hec_tls: ssl.SSLContext | None = (
            ssl.create_default_context(
                cafile=str(cfg.hec_ca_file) if cfg.hec_ca_file is not None else None
            )
            if own and cfg.hec_enabled
            else None
        )

    def _backoff(self) -> Backoff:
        """A sink's own retries last at most ``retry_max_backoff_s`` before it reports the outage
        (a logged, counted retry here); the fan-out then tries again, forever."""
        limit = self.rt.settings.worker.retry_max_backoff_s
        return Backoff(initial=0.05, cap=min(5.0, limit), deadline=limit)

    def _open(self) -> dict[str, Destination]:
        if self._destinations is not None:
            return self._destinations
        cfg: SiemSettings = self.rt.settings.siem
        out: dict[str, Destination] = {}
        if cfg.syslog_enabled:
            assert self._syslog_tls is not None
            out["syslog"] = SyslogTlsSink(
                cfg.syslog_host,
                cfg.syslog_port,
                ssl_context=self._syslog_tls,
                payload=cfg.syslog_format,
                backoff=self._backoff(),
            )
        if cfg.hec_enabled:
            assert cfg.hec_url is not None and cfg.hec_token is not None  # settings check it
            assert self._hec_tls is not None
            # a session needs the running loop: created on the first batch, not at app build
            connector = aiohttp.TCPConnector(ssl=self._hec_tls)
            self._session = aiohttp.ClientSession(connector=connector)
            out["hec"] = HecSink(
                cfg.hec_url, cfg.hec_token, session=self._session, backoff=self._backoff()
            )
        self._destinations = out
        return out

    async def handle(self, events: Sequence[EventT]) -> None:
        rt = self.rt
        started = time.perf_counter()
        decoded, pending = await decode_batch(
            rt, self.stage, "AuditEvent", events, self._dead_letter
        )
        accepted: list[tuple[EventT, dict[str, Any]]] = []
        for event, rec in decoded:
            if another_regions_audit(rec, rt.settings.region):  # that region's fan-out sends it
                rt.metrics.records_skipped.labels(self.stage, "other_region").inc()
                continue
            if self._ocsf:
                try:
                    key, value = encode_ocsf(rec)
                except _RENDER_ERRORS as exc:
                    pending.append(await self._dead_letter(event, "unrenderable_ocsf", exc))
                    continue
                pending.append(await rt.send(rt.topics.siem_ocsf, key, value))
            accepted.append((event, rec))
        results = await asyncio.gather(
            *(self._deliver(name, dest, accepted) for name, dest in self._open().items())
        )
        for dead in results:
            pending.extend(dead)
        await rt.deliver(pending, self.stage)
        rt.metrics.records_out.labels(self.stage).inc(len(accepted))
        rt.metrics.batch_seconds.labels(self.stage).observe(time.perf_counter() - started)

    async def _deliver(
        self, name: str, dest: Destination, accepted: list[tuple[EventT, dict[str, Any]]]
    ) -> list[Awaitable[Any]]:
        """Make ``accepted`` durable at ``dest``; returns the dead letters of what it refused."""
        dead: list[Awaitable[Any]] = []
        added: list[tuple[EventT, dict[str, Any]]] = []
        for event, rec in accepted:
            try:
                dest.add(rec)
            except _RENDER_ERRORS as exc:
                dead.append(await self._dead_letter(event, f"unrenderable_{name}", exc))
            else:
                added.append((event, rec))
        try:
            await self._flush(name, dest)
        except SinkRejected:
            # find the offending records one by one: the good ones still reach the SIEM
            dest.clear()
            for event, rec in added:
                dest.add(rec)
                try:
                    await self._flush(name, dest)
                except SinkRejected as exc:
                    dest.clear()
                    dead.append(await self._dead_letter(event, f"rejected_by_{name}", exc))
        return dead

    async def _flush(self, name: str, dest: Destination) -> None:
        await retry_transient(
            dest.flush,
            is_transient=lambda e: isinstance(e, SinkError) and e.retriable,
            max_backoff_s=self.rt.settings.worker.retry_max_backoff_s,
            what=f"siem.{name}",
            on_retry=lambda _e: self.rt.metrics.sink_retries.labels(f"siem.{name}").inc(),
        )

    async def _dead_letter(self, event: EventT, reason: str, error: BaseException) -> Any:
        topic = self.rt.topics.deadletter_siem
        return await self.rt.dead_letter(
            event, stage=self.stage, reason=reason, error=error, topic=topic
        )

    async def close(self) -> None:
        """Close connections (the syslog sink first re-checks its last batch, briefly)."""
        for dest in (self._destinations or {}).values():
            if isinstance(dest, SyslogTlsSink):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(dest.close(), 5.0)
        if self._session is not None:
            await self._session.close()
            self._session = None
