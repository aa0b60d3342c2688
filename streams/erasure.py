"""Carrying out erasure requests in the workspace's home region, and signing what was removed.

The worker of a region consumes ``control.erasure`` and takes the requests of its own region's
workspaces (another region's worker takes the rest: each region's stores are reachable only
from there). A request is done when its signed certificate is on ``control.certificates``; one
that already has a certificate is skipped, so a request consumed twice (rebalance, restart) is
erased once, and one interrupted midway is found again without a certificate and finished (every
step is idempotent). A new request for the same scope runs again and certifies what it found.

Order, and why:

1. **Keys first.** Shredding the call keys (subject) or the workspace key with every call key
   under it (workspace) makes every copy unreadable at once, wherever it lives: Kafka history,
   S3, replays, caches (see :mod:`callvault.control.keys`). If anything after this fails, the
   data is already unrecoverable while the request is retried.
2. **Objects**: every version and delete marker under the call's or workspace's prefixes,
   verified gone by listing again (:meth:`ObjectStore.purge_prefix`).
3. **Rows** last: for a subject they are the index that finds the calls, so deleting them
   earlier would orphan a retry. Verified by counting again.

Rows of a sealed record that a writer checked just before the shred and flushed just after the
delete are caught by :meth:`Eraser.recheck`, which deletes the erased scope's rows again for an
hour (the writers drop records of shredded calls and deleted workspaces from then on).

Kept on purpose: the audit trail (``audit.events``, ``audit.chain.*``, ``audit_log``), which
holds ids and counts, never content or numbers, and must outlive the data it accounts for.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from faust.types import EventT

from callvault.audit import audit_event
from callvault.audit_chain import signing_key
from callvault.certificates import sign
from callvault.control.erasure import certificate_view
from callvault.control.keys import KeyAdmin
from callvault.control.view import CompactedView
from callvault.errors import CallvaultError
from schemas.codec import get_codec
from sinks.clickhouse.purge import delete_call_rows, predicate
from sinks.errors import SinkError
from sinks.objects import layout
from streams.processors import decode_batch
from streams.retry import retry_transient
from streams.runtime import Runtime

log = structlog.get_logger(__name__)

ACTOR = "worker:erasure"


def _now() -> datetime:
    return datetime.now(UTC)


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, SinkError | CallvaultError) and bool(getattr(exc, "retriable", False))


class Eraser:
    """The ``control.erasure`` stage of a worker."""

    stage = "erasure"
    RECHECK_S = 3600.0

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._certificates: CompactedView[dict[str, Any]] | None = None
        #: (workspace, call ids or None for all) -> monotonic deadline of the row recheck
        self._recheck: dict[tuple[str, tuple[str, ...] | None], float] = {}

    async def _issued(self) -> CompactedView[dict[str, Any]]:
        if self._certificates is None:
            view = certificate_view(self.rt.settings)
            await view.start()
            self._certificates = view
        return self._certificates

    async def close(self) -> None:
        if self._certificates is not None:
            await self._certificates.stop()

    async def handle(self, events: Sequence[EventT], /) -> None:
        rt = self.rt
        decoded, pending = await decode_batch(rt, self.stage, "ErasureRequest", events, self._dead)
        for event, request in decoded:
            policy = await rt.policy(request["workspace_id"])
            if policy is None or policy.region != rt.settings.region:
                # the home region's worker takes it; the CLI refuses unknown workspaces
                rt.metrics.records_skipped.labels(self.stage, "other_region").inc()
                continue
            issued = await self._issued()
            await issued.sync()
            if issued.get(request["request_id"]) is not None:
                rt.metrics.records_skipped.labels(self.stage, "already_certified").inc()
                continue
            try:
                await retry_transient(
                    lambda request=request: self.erase(request),  # type: ignore[misc]
                    is_transient=_transient,
                    max_backoff_s=rt.settings.worker.retry_max_backoff_s,
                    what="erasure",
                )
            except Exception as exc:  # permanent: reported, never silently dropped
                log.exception("erasure_failed", request_id=request["request_id"])
                await (await rt.audit(self._event(request, "erasure.failed", outcome="FAILURE",
                                                  details={"error": str(exc)[:500]})))  # fmt: skip
                pending.append(await self._dead(event, "erasure_failed", exc))
        await rt.deliver(pending, self.stage)

    async def _dead(self, event: EventT, reason: str, exc: Exception) -> Awaitable[Any]:
        return await self.rt.dead_letter(event, stage=self.stage, reason=reason, error=exc)

    async def erase(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Erase what ``request`` names, then issue, publish and audit its certificate."""
        rt, ws = self.rt, request["workspace_id"]
        admin = KeyAdmin(rt.settings, rt.keys, actor=ACTOR, actor_kind="SYSTEM")
        items: list[dict[str, Any]] = []
        shredded: list[str] = []
        if request["kind"] == "WORKSPACE":
            call_ids: tuple[str, ...] | None = None
            result = await admin.shred_workspace(ws)
            shredded += result.destroyed_key_ids
            items.append(self._kafka_item(f"workspace:{ws}", len(result.destroyed_key_ids)))
            prefixes = [layout.workspace_prefix(ws), layout.staging_workspace_prefix(ws)]
        else:
            calls = await self._subject_calls(ws, request["subject_phone_hash"])
            call_ids = tuple(sorted(calls))
            prefixes = []
            for call_id, started in sorted(calls.items()):
                result = await admin.shred_call(ws, call_id)
                shredded += result.destroyed_key_ids
                items.append(self._kafka_item(f"call:{call_id}", len(result.destroyed_key_ids)))
                prefixes += [
                    layout.call_prefix(ws, call_id, started + timedelta(days=d)) for d in (-1, 0, 1)
                ] + [layout.staging_prefix(ws, call_id)]
        for prefix in prefixes:
            for version in await rt.objects.purge_prefix(prefix):
                items.append({
                    "store": "s3", "locator": f"s3://{rt.objects.bucket}/{version.key}",
                    "version": version.version_id, "count": 1, "deleted_at": _now(),
                })  # fmt: skip
        db = rt.settings.clickhouse.database
        if call_ids is None or call_ids:
            self._recheck[(ws, call_ids)] = time.monotonic() + self.RECHECK_S
        rows = await delete_call_rows(rt.clickhouse, db, ws, call_ids)
        for table, count in sorted(rows.items()):
            items.append({
                "store": "clickhouse", "locator": self._rows_locator(db, table, ws, call_ids),
                "version": None, "count": count, "deleted_at": _now(),
            })  # fmt: skip
        cert = sign(
            {
                "certificate_id": str(uuid.uuid4()),
                "request_id": request["request_id"],
                "workspace_id": ws,
                "kind": request["kind"],
                "issued_at": _now(),
                "items": items,
                "key_ids_shredded": sorted(set(shredded)),
            },
            signing_key(rt.settings),
        )
        topic = rt.topics.name("control.certificates")
        value = get_codec().encode("DeletionCertificate", cert)
        await (await rt.send(topic, request["request_id"].encode(), value))
        await (await rt.audit(self._event(request, "erasure.complete", details={
            "certificate_id": cert["certificate_id"], "calls": "all" if call_ids is None
            else len(call_ids), "objects": sum(1 for i in items if i["store"] == "s3"),
            "rows": sum(rows.values()), "keys_shredded": len(cert["key_ids_shredded"]),
        })))  # fmt: skip
        log.info("erasure_complete", request_id=request["request_id"], kind=request["kind"],
                 items=len(items), keys=len(cert["key_ids_shredded"]))  # fmt: skip
        return cert

    async def _subject_calls(self, workspace_id: str, phone_hash: str) -> dict[str, datetime]:
        """The subject's calls (as caller or as callee) and their start times, from ``calls``."""
        db = self.rt.settings.clickhouse.database
        _, rows = await self.rt.clickhouse.query(
            f"SELECT call_id, min(call_started_at) FROM {db}.calls "  # noqa: S608 (identifier)
            "WHERE workspace_id = {ws:String} AND (caller_number_hash = {h:String} "
            "OR callee_number_hash = {h:String}) GROUP BY call_id",
            parameters={"ws": workspace_id, "h": phone_hash},
        )
        return {
            str(call): (started if started.tzinfo else started.replace(tzinfo=UTC))
            for call, started in rows
        }

    def _kafka_item(self, scope: str, keys: int) -> dict[str, Any]:
        topics = ", ".join(self.rt.topics.name(t) for t in
                           ("sealed.metadata", "sealed.audio", "sealed.transcript"))  # fmt: skip
        return {"store": "kafka", "locator": f"{topics}: records of {scope}, crypto-shredded",
                "version": None, "count": keys, "deleted_at": _now()}  # fmt: skip

    @staticmethod
    def _rows_locator(db: str, table: str, ws: str, call_ids: tuple[str, ...] | None) -> str:
        where = predicate(call_ids).replace("{ws:String}", repr(ws))
        if call_ids is not None:
            where = where.replace("{ids:Array(String)}", "(" + ", ".join(map(repr, call_ids)) + ")")
        return f"{db}.{table} WHERE {where}"

    def _event(
        self, request: Mapping[str, Any], action: str, *, outcome: Any = "SUCCESS",
        details: Mapping[str, Any],
    ) -> dict[str, Any]:  # fmt: skip
        return audit_event(
            action, actor_kind="SYSTEM", actor_id=ACTOR, outcome=outcome,
            workspace_id=request["workspace_id"], region=self.rt.settings.region,
            target=f"erasure:{request['request_id']}",
            details={"kind": request["kind"], "requested_by": request["requested_by"], **details},
        )  # fmt: skip

    async def recheck(self) -> int:
        """Delete again the rows of scopes erased within the hour (late writes); rows deleted."""
        now, total = time.monotonic(), 0
        db = self.rt.settings.clickhouse.database
        for scope, until in list(self._recheck.items()):
            if until < now:
                del self._recheck[scope]
                continue
            ws, call_ids = scope
            rows = await delete_call_rows(self.rt.clickhouse, db, ws, call_ids)
            if rows:
                total += sum(rows.values())
                await (await self.rt.audit(audit_event(
                    "erasure.recheck", actor_kind="SYSTEM", actor_id=ACTOR, workspace_id=ws,
                    region=self.rt.settings.region, target=f"workspace:{ws}",
                    details={f"rows_{t}": n for t, n in rows.items()},
                )))  # fmt: skip
        return total
