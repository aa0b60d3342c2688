"""The first vertical slice on the real stack: ingest.metadata -> worker -> ClickHouse."""

from __future__ import annotations

from collections import Counter

import pytest

from callvault.analytics_client import query
from callvault.settings import Settings
from callvault.simulate import publish_events, publish_records, simulated_calls
from callvault.topics import Topics
from callvault.worker_process import committed_and_end, wait_caught_up
from schemas.codec import get_codec
from sinks.objects import layout
from sinks.objects.store import ObjectStore
from tests.kafka_read import read_all
from tests.streams.conftest import group_of, isolated_settings
from tests.streams.test_sealing_slice import _all_topics, _chunk, _segment

pytestmark = pytest.mark.integration


def _topics(settings: Settings) -> list[str]:
    t = Topics(settings)
    return [t.ingest_metadata, t.sealed_metadata]


async def test_n_events_in_n_rows_out(slice_settings, worker_factory):
    calls = list(simulated_calls("acme", 40, seed=7))
    events = [ev for c in calls for ev in c.events]
    await publish_events(slice_settings, events)

    worker = worker_factory(slice_settings)
    await worker.wait_healthy()
    await wait_caught_up(
        slice_settings, group_of(slice_settings), _topics(slice_settings), worker=worker
    )

    res = query(
        slice_settings, "SELECT count(), uniqExact(event_id) FROM callvault.call_events FINAL"
    )
    assert res.rows == [[len(events), len(events)]]
    res = query(
        slice_settings,
        "SELECT call_id, state, region, caller_number_masked, duration_ms IS NOT NULL "
        "FROM callvault.calls FINAL ORDER BY call_id",
    )
    assert [r[0] for r in res.rows] == sorted(c.call_id for c in calls)
    assert {r[1] for r in res.rows} == {"ENDED"}
    assert {r[2] for r in res.rows} == {"eu"}
    assert all("*" in r[3] for r in res.rows)
    assert all(r[4] for r in res.rows)

    # the sealed topic carries the region header and no clear phone number
    sealed = await read_all(slice_settings, Topics(slice_settings).sealed_metadata)
    assert len(sealed) == len(events)
    codec = get_codec()
    numbers = {ev["caller_number"] for ev in events}
    for msg in sealed:
        assert dict(msg.headers)["region"] == b"eu"
        rec = codec.decode("SealedCallEvent", msg.value)
        assert rec["caller_number_masked"] not in numbers
        assert not any(n.encode() in msg.value for n in numbers)


async def test_poison_messages_are_dead_lettered_and_the_stream_continues(
    slice_settings, worker_factory
):
    calls = list(simulated_calls("acme", 5, seed=3))
    good = [ev for c in calls for ev in c.events]
    unknown_ws = next(iter(simulated_calls("no-such-workspace", 1, seed=4))).events[:1]
    poison = [b"\x00garbage", b"\xc3\x01" + b"\x00" * 8 + b"body", b""]
    await publish_events(slice_settings, good[:6])
    await publish_events(slice_settings, unknown_ws, raw=poison)
    await publish_events(slice_settings, good[6:])

    worker = worker_factory(slice_settings)
    await worker.wait_healthy()
    await wait_caught_up(
        slice_settings, group_of(slice_settings), _topics(slice_settings), worker=worker
    )

    res = query(slice_settings, "SELECT count() FROM callvault.call_events FINAL")
    assert res.rows == [[len(good)]]

    dead = await read_all(slice_settings, Topics(slice_settings).deadletter_metadata)
    codec = get_codec()
    letters = [codec.decode("DeadLetter", m.value) for m in dead]
    reasons = sorted(letter["reason"].split(":")[0] for letter in letters)
    assert reasons == ["undecodable"] * 3 + ["unknown_workspace"]
    assert sorted(
        letter["value"] for letter in letters if letter["reason"].startswith("undec")
    ) == sorted(poison)
    assert all(
        letter["source_topic"] == Topics(slice_settings).ingest_metadata for letter in letters
    )


async def test_a_region_bound_sink_refuses_another_regions_records(slice_settings, worker_factory):
    """globex lives in "na"; this worker is "eu": its analytics sink and its recordings sink
    (the region's bucket) refuse globex's sealed records, audit each refusal and dead-letter
    them (content dead letters without the content)."""
    calls = list(simulated_calls("globex", 3, seed=5))
    await publish_events(slice_settings, [ev for c in calls for ev in c.events])
    first = calls[0]
    started = first.events[0]["call_started_at"]
    chunk = _chunk(first.call_id, 0, started=started, workspace="globex")
    segment = _segment(first.call_id, "hello", started=started, workspace_id="globex")
    await publish_records(slice_settings, "ingest.audio", "AudioChunk", [chunk])
    await publish_records(slice_settings, "ingest.transcript", "TranscriptSegment", [segment])
    worker = worker_factory(slice_settings)
    await worker.wait_healthy()
    t = Topics(slice_settings)
    sealed = [t.name(f"sealed.{k}") for k in ("metadata", "audio", "transcript")]
    await wait_caught_up(
        slice_settings, group_of(slice_settings), _all_topics(slice_settings) + sealed,
        worker=worker,
    )  # fmt: skip

    assert query(slice_settings, "SELECT count() FROM callvault.call_events").rows == [[0]]
    dead = await read_all(slice_settings, t.deadletter_metadata)
    reasons = [get_codec().decode("DeadLetter", m.value)["reason"] for m in dead]
    assert len(reasons) == 9 and all(r.startswith("residency") for r in reasons)
    for kind in ("audio", "transcript"):
        letters = await read_all(slice_settings, t.name(f"deadletter.{kind}"))
        decoded = [get_codec().decode("DeadLetter", m.value) for m in letters]
        assert len(decoded) == 1 and decoded[0]["reason"].startswith("residency"), kind
        assert not decoded[0]["value"], kind  # the sealed content is not kept
    store = ObjectStore(slice_settings)
    try:  # nothing of globex reached the eu bucket, not even staging
        assert await store.list_objects(layout.staging_workspace_prefix("globex")) == []
        assert await store.list_objects(layout.workspace_prefix("globex")) == []
    finally:
        store.close()
    audits = [
        get_codec().decode("AuditEvent", m.value)
        for m in await read_all(slice_settings, t.audit_events)
    ]
    refused = [a for a in audits if a["action"] == "residency.refused"]
    assert {(a["region"], a["details"]["record_region"], a["outcome"]) for a in refused} == {
        ("eu", "na", "DENIED")
    }
    by_sink = Counter(a["actor"]["id"] for a in refused)
    assert by_sink["sink:recordings.stage_audio"] == 1
    assert by_sink["sink:analytics.calls"] == 9 and by_sink["sink:analytics.transcripts"] == 1


async def test_sigkill_mid_stream_loses_nothing_and_duplicates_nothing(
    stack_settings, tmp_path, worker_factory
):
    from callvault.control.workspaces import WorkspaceDirectory
    from callvault.topics import ensure_topics

    # Small batches so the worker is surely mid-stream when it is killed.
    settings = isolated_settings(stack_settings, tmp_path, batch_max=25, commit_interval_s=0.2)
    await ensure_topics(settings)
    async with WorkspaceDirectory(settings) as d:
        await d.create("acme", region="eu", retention_days=30)
    calls = list(simulated_calls("acme", 1500, seed=11))
    events = [ev for c in calls for ev in c.events]
    await publish_events(settings, events)
    topics = _topics(settings)
    group = group_of(settings)

    worker = worker_factory(settings)
    await worker.wait_healthy()
    # kill as soon as the first offsets are committed anywhere: work is in flight
    while True:
        committed, _ = await committed_and_end(settings, group, topics)
        if sum(committed.values()) > 0:
            break
        assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
    worker.kill()
    committed, _ends = await committed_and_end(settings, group, topics)
    # ingest + sealed: everything is done when both sides committed all their records
    assert sum(committed.values()) < 2 * len(events), (
        "the worker finished before it was killed; the test proved nothing"
    )

    restarted = worker_factory(settings)
    await restarted.wait_healthy()
    await wait_caught_up(settings, group, topics, worker=restarted, timeout_s=240)

    res = query(settings, "SELECT count(), uniqExact(event_id) FROM callvault.call_events FINAL")
    assert res.rows == [[len(events), len(events)]]
    res = query(settings, "SELECT count(), countIf(state = 'ENDED') FROM callvault.calls FINAL")
    assert res.rows == [[len(calls), len(calls)]]
