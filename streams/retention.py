"""Retention enforced against the workspace's *current* policy, by the worker of its region.

Every artifact carries ``expires_at`` from the retention in force when it was sealed, and the
stores act on it by themselves (ClickHouse ``TTL``; later S3 lifecycle rules). What a stamp cannot
do is follow a policy change: when a workspace *shortens* its retention, data sealed under the old
period must go too. This sweeper closes that gap, and is also what ends a call's life in Kafka:

- **Kafka history** (sealed topics keep their segments for a year): the call's data keys are
  shredded once ``call_started_at + retention`` has passed, so every sealed copy, every replay and
  every consumer's cached plaintext path dies at once (``KeyAdmin.shred_call``: audited);
- **ClickHouse rows** of such calls are deleted explicitly, beside the TTL.

Lengthening retention revives nothing: a shredded key stays shredded and deleted rows stay
deleted; only data still present lives longer.

Runs in the worker because the worker owns its region's analytics store (an embedded chDB cannot
be opened by a second process) and already holds live views of policies and keys.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from callvault.audit import audit_event
from callvault.control.workspaces import WorkspacePolicy
from callvault.crypto.keyring import KeyRecord
from sinks.clickhouse.purge import delete_call_rows
from sinks.objects import layout
from streams.runtime import Runtime

log = structlog.get_logger(__name__)

_MAX_LIFECYCLE_RULES = 1000


@dataclass(frozen=True)
class ExpiredCall:
    workspace_id: str
    call_id: str
    started_at: datetime


@dataclass
class SweepReport:
    keys_shredded: int = 0
    calls_expired: int = 0
    objects_deleted: int = 0
    rows_deleted: dict[str, int] = field(default_factory=dict)


def lifecycle_rules(
    namespace: str, policies: Mapping[str, WorkspacePolicy]
) -> list[dict[str, Any]]:
    """Bucket lifecycle rules for a deployment's workspaces: finished objects and staging expire
    a day after their retention (objects are grouped by day), and unfinished multipart uploads
    are aborted after one day."""
    rules: list[dict[str, Any]] = [
        {
            "ID": f"cv:{namespace}abort-incomplete-uploads",
            "Filter": {"Prefix": namespace},
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }
    ]
    for ws in sorted(policies):
        days = policies[ws].retention_days + 1
        for what, prefix in (
            ("recordings", layout.workspace_prefix(ws)),
            ("staging", layout.staging_workspace_prefix(ws)),
        ):
            rules.append({
                "ID": f"cv:{namespace}{what}:{ws}"[:255],
                "Filter": {"Prefix": namespace + prefix},
                "Status": "Enabled",
                "Expiration": {"Days": days},
            })  # fmt: skip
    return rules


def _comparable(rules: list[dict[str, Any]]) -> list[str]:
    keep = ("ID", "Filter", "Status", "Expiration", "AbortIncompleteMultipartUpload")
    return sorted(json.dumps({k: r.get(k) for k in keep}, sort_keys=True) for r in rules)


def expired_calls(
    records: Iterable[KeyRecord],
    policies: Mapping[str, WorkspacePolicy],
    *,
    region: str,
    now: datetime,
) -> list[ExpiredCall]:
    """Live call keys of this region's workspaces whose call is past its current retention.

    A key without ``call_started_at`` (written before it existed) is judged by its creation
    time, which is at or after the call's start: such a call is shredded late by at most the
    time between the call's start and its first sealed artifact, never early.
    """
    out: dict[tuple[str, str], ExpiredCall] = {}
    for rec in records:
        ws, call = rec["workspace_id"], rec["call_id"]
        if rec["scope"] != "CALL" or rec["destroyed"] or ws is None or call is None:
            continue
        policy = policies.get(ws)
        if policy is None or policy.region != region:
            continue
        started = rec.get("call_started_at") or rec["created_at"]
        if started + timedelta(days=policy.retention_days) <= now:
            out[(ws, call)] = ExpiredCall(ws, call, started)
    return sorted(out.values(), key=lambda e: (e.workspace_id, e.started_at))


class RetentionSweeper:
    """One pass: shred expired calls' keys, delete their rows. Idempotent; safe to run often."""

    #: How long a purged call's rows are looked for again: a sealed record consumed late (sealed
    #: before the shred, written after the delete) must not leave a row behind.
    RECHECK_S = 3600.0

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._purged: dict[tuple[str, str], float] = {}

    async def sweep(self, now: datetime | None = None) -> SweepReport:
        rt = self.rt
        now = now or datetime.now(UTC)
        await rt.workspaces.sync()
        await rt.keys.store.sync()
        policies = rt.workspaces.items()
        expired = expired_calls(
            await rt.keys.store.records(), policies, region=rt.settings.region, now=now
        )
        report = SweepReport(calls_expired=len(expired))
        horizon = time.monotonic() + self.RECHECK_S
        for call in expired:
            self._purged[(call.workspace_id, call.call_id)] = horizon
            # objects first, keys last: a failed delete leaves the key live, so the next pass
            # finds the call again (a shredded call is never listed as expired again)
            deleted = await self._delete_objects(call)
            result = await rt.key_admin.shred_call(call.workspace_id, call.call_id)
            report.keys_shredded += len(result.destroyed_key_ids)
            report.objects_deleted += len(deleted)
            if deleted:
                await self._audit_objects(call, deleted)
        for ws, policy in policies.items():
            if policy.region == rt.settings.region and not policy.deleted:
                cutoff = now - timedelta(days=policy.retention_days)
                await self._delete_rows(ws, cutoff, report, self._recently_purged(ws))
                report.objects_deleted += await self._delete_days_before(ws, cutoff)
        await self._lifecycle(policies)
        if report.calls_expired or report.rows_deleted:
            log.info("retention_sweep", **report.__dict__)
        return report

    async def _delete_objects(self, call: ExpiredCall) -> list[str]:
        """The call's recording, documents, manifest and staging, verified gone by listing.

        The object prefix holds the call's start date; a key records the start of the call as
        the sealer saw it, which is the same instant, but a day either side is cleared too so an
        orphaned call (dated by its first audio) cannot be missed.
        """
        store, ws, call_id = self.rt.objects, call.workspace_id, call.call_id
        prefixes = [
            layout.call_prefix(ws, call_id, call.started_at + timedelta(days=d)) for d in (-1, 0, 1)
        ] + [layout.staging_prefix(ws, call_id)]
        deleted: list[str] = []
        for prefix in prefixes:
            deleted += [o.key for o in await store.delete_prefix(prefix)]
        return deleted

    async def _delete_days_before(self, workspace_id: str, cutoff: datetime) -> int:
        """Whole days of a workspace's objects that are all past retention (the day before the
        cutoff's day and earlier), whatever their keys say: what the bucket's lifecycle rule
        would do, done now and verified, and what catches objects of calls without a key."""
        store, last = self.rt.objects, (cutoff - timedelta(days=1)).date()
        count = 0
        ws_prefix = layout.workspace_prefix(workspace_id)
        for year in await store.prefixes(ws_prefix):
            for month in await store.prefixes(year):
                for day in await store.prefixes(month):
                    try:
                        when = datetime.strptime(day[len(ws_prefix) : -1], "%Y/%m/%d").date()
                    except ValueError:
                        continue
                    if when <= last:
                        gone = await store.delete_prefix(day)
                        count += len(gone)
                        if gone:
                            await self._audit_day(workspace_id, day, len(gone))
        return count

    async def _lifecycle(self, policies: Mapping[str, WorkspacePolicy]) -> None:
        """Mirror each workspace's retention into bucket lifecycle rules (a backstop should the
        sweeper stop; stores that ignore them, like SeaweedFS today, still store them)."""
        store, region = self.rt.objects, self.rt.settings.region
        mine = {ws: p for ws, p in policies.items() if p.region == region and not p.deleted}
        rules = lifecycle_rules(store.namespace, mine)
        current = await store.get_lifecycle()
        ours = f"cv:{store.namespace}"
        others = [r for r in current if not str(r.get("ID", "")).startswith(ours)]
        wanted = others + rules
        if len(wanted) > _MAX_LIFECYCLE_RULES:  # S3's limit; the sweeper still enforces all
            log.warning("lifecycle_rules_truncated", wanted=len(wanted))
            wanted = wanted[:_MAX_LIFECYCLE_RULES]
        if _comparable(current) != _comparable(wanted):
            await store.put_lifecycle(wanted)

    async def _audit_objects(self, call: ExpiredCall, keys: list[str]) -> None:
        event = audit_event(
            "retention.purge", actor_kind="SYSTEM", actor_id="worker:retention",
            workspace_id=call.workspace_id, region=self.rt.settings.region,
            target=f"call:{call.call_id}",
            details={"objects": len(keys), "object_keys": " ".join(sorted(keys)[:50]),
                     "call_started_at": call.started_at.isoformat()},
        )  # fmt: skip
        await (await self.rt.audit(event))

    async def _audit_day(self, workspace_id: str, prefix: str, count: int) -> None:
        event = audit_event(
            "retention.purge", actor_kind="SYSTEM", actor_id="worker:retention",
            workspace_id=workspace_id, region=self.rt.settings.region,
            target=f"objects:{prefix}", details={"objects": count},
        )  # fmt: skip
        await (await self.rt.audit(event))

    def _recently_purged(self, workspace_id: str) -> set[str]:
        now = time.monotonic()
        for key in [k for k, until in self._purged.items() if until < now]:
            del self._purged[key]
        return {call for ws, call in self._purged if ws == workspace_id}

    async def _delete_rows(
        self, workspace_id: str, cutoff: datetime, report: SweepReport, purged: set[str]
    ) -> None:
        """Rows of calls past ``cutoff`` (found by the calls table) and of calls purged lately
        (whose calls row may be gone while a late row of another table arrived)."""
        db = self.rt.settings.clickhouse.database
        params = {"ws": workspace_id, "cutoff": cutoff.replace(tzinfo=None)}
        _, rows = await self.rt.clickhouse.query(
            # db and table are identifiers from settings and constants; values are bound
            f"SELECT call_id FROM {db}.calls WHERE workspace_id = {{ws:String}} "  # noqa: S608
            "AND call_started_at < {cutoff:DateTime64(3)}",
            parameters=params,
        )
        ids = sorted({r[0] for r in rows} | purged)
        if not ids:
            return
        deleted = await delete_call_rows(self.rt.clickhouse, db, workspace_id, ids)
        if not deleted:
            return
        for table, n in deleted.items():
            report.rows_deleted[table] = report.rows_deleted.get(table, 0) + n
        event = audit_event(
            "retention.purge", actor_kind="SYSTEM", actor_id="worker:retention",
            workspace_id=workspace_id, region=self.rt.settings.region,
            target=f"workspace:{workspace_id}",
            details={"calls": len(ids), "cutoff": cutoff.isoformat(),
                     **{f"rows_{t}": n for t, n in deleted.items()}},
        )  # fmt: skip
        await (await self.rt.audit(event))
