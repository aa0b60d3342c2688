"""Retention follows the workspace's current policy: shortening it purges calls already stored
(objects deleted and verified by listing, rows deleted, keys shredded so every sealed copy in
Kafka is unreadable), and lengthening it revives nothing. The invariant: after expiry nothing of
the call exists anywhere, in any readable form."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from callvault.analytics_client import query
from callvault.control.keys import open_keys
from callvault.control.workspaces import WorkspaceDirectory
from callvault.crypto import Aad, KeyDestroyed, open_artifact
from callvault.simulate import publish_records, simulated_calls
from callvault.topics import Topics, ensure_topics
from callvault.worker_process import wait_caught_up
from schemas.codec import get_codec
from sinks.objects import layout
from sinks.objects.store import ObjectStore
from streams.retention import expired_calls
from tests.kafka_read import read_all
from tests.streams.conftest import group_of, isolated_settings
from tests.streams.test_sealing_slice import _all_topics, _chunk, _sealed, _segment

pytestmark = pytest.mark.integration

_TIMES = ("call_started_at", "occurred_at", "answered_at", "ended_at")


def _aged(call, days: int) -> list[dict]:
    return [{**e, **{k: e[k] - timedelta(days=days) for k in _TIMES if e[k]}} for e in call.events]


def test_expiry_is_judged_by_the_current_policy_and_region():
    from callvault.control.workspaces import WorkspacePolicy

    now = datetime(2026, 11, 26, tzinfo=UTC)
    rec = {
        "key_id": "ck-1", "scope": "CALL", "workspace_id": "acme", "call_id": "c1",
        "wrapped_key": b"x", "wrapping_key_id": "wk-1", "algorithm": "AES-256-GCM",
        "created_at": now - timedelta(days=9), "destroyed": False,
        "call_started_at": now - timedelta(days=10),
    }  # fmt: skip
    eu30 = {"acme": WorkspacePolicy("acme", "A", "eu", retention_days=30)}
    eu7 = {"acme": WorkspacePolicy("acme", "A", "eu", retention_days=7)}
    assert expired_calls([rec], eu30, region="eu", now=now) == []
    assert [e.call_id for e in expired_calls([rec], eu7, region="eu", now=now)] == ["c1"]
    assert expired_calls([rec], eu7, region="na", now=now) == []  # another region's worker
    assert expired_calls([{**rec, "destroyed": True}], eu7, region="eu", now=now) == []
    legacy = {**rec, "call_started_at": None}  # judged by key creation: later, never earlier
    assert expired_calls([legacy], eu7, region="eu", now=now - timedelta(days=2, hours=12)) == []


async def _rows(settings, call_id: str, table: str = "calls") -> int:
    res = await asyncio.to_thread(
        query, settings, f"SELECT count() FROM callvault.{table} FINAL WHERE call_id = '{call_id}'"
    )
    return int(res.rows[0][0])


async def test_shortening_retention_purges_stored_calls_and_lengthening_revives_nothing(
    stack_settings, tmp_path, worker_factory
):
    settings = isolated_settings(stack_settings, tmp_path, retention_sweep_s=0.5)
    await ensure_topics(settings)
    async with WorkspaceDirectory(settings) as d:
        await d.create("acme", region="eu", retention_days=30)
    old, recent = (next(iter(simulated_calls("acme", 1, seed=s))) for s in (51, 52))
    old_events, recent_events = _aged(old, 20), _aged(recent, 2)
    await publish_records(settings, "ingest.metadata", "CallEvent", old_events + recent_events)
    old_start = old_events[0]["call_started_at"]
    old_events[-1]["audio_chunks"] = {"CALLER": 1}
    await publish_records(
        settings, "ingest.audio", "AudioChunk", [_chunk(old.call_id, 0, started=old_start)]
    )
    await publish_records(
        settings, "ingest.transcript", "TranscriptSegment",
        [_segment(old.call_id, "hello", started=old_start),
         _segment(old.call_id, "A short call.", started=old_start, kind="SUMMARY")],
    )  # fmt: skip
    await publish_records(settings, "ingest.metadata", "CallEvent", old_events[-1:])
    worker = worker_factory(settings)
    await worker.wait_healthy()
    await wait_caught_up(settings, group_of(settings), _all_topics(settings), worker=worker)
    assert await _rows(settings, old.call_id) == 1 and await _rows(settings, recent.call_id) == 1
    store = ObjectStore(settings)
    call_prefix = layout.call_prefix("acme", old.call_id, old_start)
    deadline = time.monotonic() + 60
    while len(await store.list_objects(call_prefix)) < 4:  # recording, 2 documents, manifest
        assert time.monotonic() < deadline, f"recording not stored:\n{worker.log_tail()}"
        await asyncio.sleep(0.2)

    async with WorkspaceDirectory(settings) as d:
        await d.update("acme", retention_days=7)  # the 20-day-old call is now past retention
    deadline = time.monotonic() + 60
    while await _rows(settings, old.call_id):
        assert time.monotonic() < deadline, f"not purged:\n{worker.log_tail()}"
        await asyncio.sleep(0.2)
    assert await _rows(settings, recent.call_id) == 1  # within the new period: kept
    # the invariant: no recording, document, manifest or staging left, no row in any table
    deadline = time.monotonic() + 30
    while await store.list_objects(call_prefix):
        assert time.monotonic() < deadline, f"objects not purged:\n{worker.log_tail()}"
        await asyncio.sleep(0.2)
    assert await store.list_objects(layout.staging_prefix("acme", old.call_id)) == []
    # one sweep pass deletes table after table: wait for the pass, not just its first table
    tables = ("calls", "call_events", "tool_invocations", "transcripts")
    deadline = time.monotonic() + 30
    while left := [t for t in tables if await _rows(settings, old.call_id, t)]:
        assert time.monotonic() < deadline, f"rows left in {left}:\n{worker.log_tail()}"
        await asyncio.sleep(0.2)
    # the bucket's lifecycle rule follows the new retention (put at the end of a sweep pass):
    # 7 days, and the day the objects are grouped by
    rule_id = f"cv:{store.namespace}recordings:acme"

    async def rule_days() -> int | None:
        rules = {r["ID"]: r for r in await store.get_lifecycle()}
        return rules[rule_id]["Expiration"]["Days"] if rule_id in rules else None

    deadline = time.monotonic() + 30
    while await rule_days() != 8:
        assert time.monotonic() < deadline, f"lifecycle rule: {await rule_days()}"
        await asyncio.sleep(0.2)
    store.close()

    [(sealed, _)] = await _sealed(settings, "audio", "SealedAudioChunk")
    segments = [s for s, _ in await _sealed(settings, "transcript", "SealedTranscriptSegment")]
    numbers = [
        m for m, _ in await _sealed(settings, "metadata", "SealedCallEvent")
        if m["call_id"] == old.call_id and m["numbers_ciphertext"]
    ]  # fmt: skip
    async with open_keys(settings) as keys:
        await keys.store.sync()
        with pytest.raises(KeyDestroyed):  # the year-long sealed topic holds only noise now
            await open_artifact(
                keys.ring, sealed["ciphertext"], Aad("acme", old.call_id, "audio", "eu")
            )
        for seg in segments:
            kind = "summary" if seg["kind"] == "SUMMARY" else "transcript"
            with pytest.raises(KeyDestroyed):
                await open_artifact(
                    keys.ring, seg["ciphertext"], Aad("acme", old.call_id, kind, "eu")
                )
        assert numbers
        for m in numbers:
            with pytest.raises(KeyDestroyed):
                await open_artifact(
                    keys.ring, m["numbers_ciphertext"], Aad("acme", old.call_id, "numbers", "eu")
                )
        assert all(not r["destroyed"] for r in await keys.store.by_call("acme", recent.call_id))

        async with WorkspaceDirectory(settings) as d:
            await d.update("acme", retention_days=365)
        await keys.store.sync()
        with pytest.raises(KeyDestroyed):
            await open_artifact(
                keys.ring, sealed["ciphertext"], Aad("acme", old.call_id, "audio", "eu")
            )
    assert await _rows(settings, old.call_id) == 0

    audits = [
        get_codec().decode("AuditEvent", m.value)
        for m in await read_all(settings, Topics(settings).audit_events)
    ]
    actions = {(a["action"], a["target"]) for a in audits}
    assert ("key.call.shred", f"call:{old.call_id}") in actions
    assert ("retention.purge", "workspace:acme") in actions
    purges = [a for a in audits if a["action"] == "retention.purge"
              and a["target"] == f"call:{old.call_id}"]  # fmt: skip
    assert purges and purges[0]["details"]["objects"] == "4"
    assert purges[0]["details"]["object_keys"].split() == sorted(
        call_prefix + name for name in
        ("manifest.json", "recording.mp3.cvs", "summary.json.cvs", "transcript.json.cvs")
    )  # fmt: skip
