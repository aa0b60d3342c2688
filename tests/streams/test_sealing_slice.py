"""Raw -> sealed on the real stack, for all three kinds, through a real worker process:
encryption, redaction, suppression in depth, policy changes mid-stream, residency headers,
crypto-shredding, and dead letters that never hold content."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from callvault.analytics_client import query
from callvault.control.keys import open_keys
from callvault.control.workspaces import WorkspaceDirectory
from callvault.crypto import Aad, KeyDestroyed, open_artifact
from callvault.settings import Settings
from callvault.simulate import publish_records, simulated_calls
from callvault.topics import Topics
from callvault.worker_process import wait_caught_up
from schemas.codec import get_codec
from tests.kafka_read import read_all
from tests.streams.conftest import group_of

pytestmark = pytest.mark.integration

CARD = "4532 0151 1283 0366"


def _chunk(call_id: str, seq: int, *, started: datetime, workspace: str = "acme", **kw):
    return {
        "call_id": call_id, "workspace_id": workspace, "leg": "CALLER", "seq": seq,
        "first_rtp_seq": seq * 50, "rtp_timestamp": seq * 8000,
        "captured_at": started + timedelta(seconds=seq), "codec": "PCMU", "sample_rate": 8000,
        "payload": hashlib.sha256(f"{call_id}/{seq}".encode()).digest() * 250,
        "missing_packets": 0, "call_started_at": started, "agent_id": "agent-1",
        "suppressed": False, **kw,
    }  # fmt: skip


def _segment(call_id: str, text: str, *, started: datetime, kind: str = "SEGMENT", **kw):
    return {
        "call_id": call_id, "workspace_id": "acme", "segment_id": f"s-{len(text)}",
        "kind": kind, "speaker": "CALLER" if kind == "SEGMENT" else "SYSTEM", "text": text,
        "started_at": started + timedelta(seconds=3), "ended_at": None, "language": "en",
        "confidence": None, "call_started_at": started, "agent_id": "agent-1",
        "suppressed": False, **kw,
    }  # fmt: skip


def _all_topics(settings: Settings) -> list[str]:
    t = Topics(settings)
    return [t.name(n) for n in ("ingest.metadata", "ingest.audio", "ingest.transcript")]


async def _sealed(settings: Settings, kind: str, schema: str) -> list[tuple[dict, dict]]:
    msgs = await read_all(settings, Topics(settings).name(f"sealed.{kind}"))
    return [(get_codec().decode(schema, m.value), dict(m.headers)) for m in msgs]


async def _run_worker(settings, worker_factory):
    worker = worker_factory(settings)
    await worker.wait_healthy()
    await wait_caught_up(settings, group_of(settings), _all_topics(settings), worker=worker)
    return worker


async def test_all_three_kinds_are_sealed_end_to_end(slice_settings, worker_factory):
    call = next(iter(simulated_calls("acme", 1, seed=11)))
    started = call.events[0]["call_started_at"]
    chunks = [_chunk(call.call_id, i, started=started) for i in range(3)]
    segments = [
        _segment(call.call_id, f"my card number is {CARD} thanks", started=started),
        _segment(call.call_id, "Caller paid by card.", started=started, kind="SUMMARY"),
    ]
    await publish_records(slice_settings, "ingest.metadata", "CallEvent", call.events)
    await publish_records(slice_settings, "ingest.audio", "AudioChunk", chunks)
    await publish_records(slice_settings, "ingest.transcript", "TranscriptSegment", segments)
    await _run_worker(slice_settings, worker_factory)

    audio = await _sealed(slice_settings, "audio", "SealedAudioChunk")
    texts = await _sealed(slice_settings, "transcript", "SealedTranscriptSegment")
    meta = await _sealed(slice_settings, "metadata", "SealedCallEvent")
    assert len(audio) == 3 and len(texts) == 2 and len(meta) == len(call.events)
    expiry = started + timedelta(days=30)
    for rec, headers in audio + texts + meta:
        assert headers["region"] == b"eu" and rec["region"] == "eu"
        assert rec["expires_at"] == expiry  # one instant for every artifact of the call

    async with open_keys(slice_settings) as keys:
        for (rec, _), sent in zip(sorted(audio, key=lambda a: a[0]["seq"]), chunks, strict=True):
            aad = Aad("acme", call.call_id, "audio", "eu")
            assert await open_artifact(keys.ring, rec["ciphertext"], aad) == sent["payload"]
            assert sent["payload"] not in rec["ciphertext"]
        by_kind = {r["kind"]: r for r, _ in texts}
        segment = await open_artifact(
            keys.ring,
            by_kind["SEGMENT"]["ciphertext"],
            Aad("acme", call.call_id, "transcript", "eu"),
        )
        assert b"4532" not in segment and b"[REDACTED:card]" in segment
        assert by_kind["SEGMENT"]["redaction_count"] == 1
        summary = await open_artifact(
            keys.ring, by_kind["SUMMARY"]["ciphertext"], Aad("acme", call.call_id, "summary", "eu")
        )
        assert summary == b"Caller paid by card."
        numbers = json.loads(
            await open_artifact(
                keys.ring,
                meta[-1][0]["numbers_ciphertext"],
                Aad("acme", call.call_id, "numbers", "eu"),
            )
        )
        assert numbers["caller"] == call.events[0]["caller_number"]
        # one data key for the whole call, across the three processors
        assert len(await keys.store.by_call("acme", call.call_id)) == 1

    # this region's analytics store: transcripts as ciphertext rows, decryptable with the key
    res = await asyncio.to_thread(
        query, slice_settings,
        "SELECT kind, ciphertext_b64 FROM callvault.transcripts FINAL "
        f"WHERE call_id = '{call.call_id}' ORDER BY kind",
    )  # fmt: skip
    assert [r[0] for r in res.rows] == ["SEGMENT", "SUMMARY"]
    async with open_keys(slice_settings) as keys:
        text = await open_artifact(
            keys.ring, base64.b64decode(res.rows[0][1]),
            Aad("acme", call.call_id, "transcript", "eu"),
        )  # fmt: skip
    assert b"[REDACTED:card]" in text and CARD.encode() not in text


async def test_suppressed_content_is_never_sealed(slice_settings, worker_factory):
    async with WorkspaceDirectory(slice_settings) as d:
        await d.update(
            "acme", agent_recording={"agent-off": False}, suppression_rules=["caller_prefix:+4480"]
        )
    ruled, flagged, silenced, normal = (
        next(iter(simulated_calls("acme", 1, seed=s))) for s in (21, 22, 23, 24)
    )
    started = ruled.events[0]["call_started_at"]
    # the edge missed the rule: metadata says nothing, the workspace rule catches the caller
    ruled_events = [{**e, "caller_number": "+448001234567"} for e in ruled.events]
    await publish_records(slice_settings, "ingest.metadata", "CallEvent", ruled_events)
    worker = await _run_worker(slice_settings, worker_factory)  # metadata first: rule known
    await publish_records(
        slice_settings, "ingest.audio", "AudioChunk",
        [
            _chunk(ruled.call_id, 0, started=started),
            _chunk(flagged.call_id, 0, started=started, suppressed=True),
            _chunk(silenced.call_id, 0, started=started, agent_id="agent-off"),
            _chunk(normal.call_id, 0, started=started),
        ],
    )  # fmt: skip
    await publish_records(
        slice_settings, "ingest.transcript", "TranscriptSegment",
        [
            _segment(ruled.call_id, "ruled", started=started),
            _segment(flagged.call_id, "flagged", started=started, suppressed=True),
            _segment(silenced.call_id, "silenced", started=started, agent_id="agent-off"),
            _segment(normal.call_id, "normal", started=started),
        ],
    )  # fmt: skip
    await wait_caught_up(
        slice_settings, group_of(slice_settings), _all_topics(slice_settings), worker=worker
    )
    audio = await _sealed(slice_settings, "audio", "SealedAudioChunk")
    texts = await _sealed(slice_settings, "transcript", "SealedTranscriptSegment")
    assert {r["call_id"] for r, _ in audio} == {normal.call_id}
    assert {r["call_id"] for r, _ in texts} == {normal.call_id}
    meta = await _sealed(slice_settings, "metadata", "SealedCallEvent")
    assert {(r["suppressed"], r["suppression_reason"]) for r, _ in meta} == {
        (True, "rule:caller_prefix:+4480")
    }
    # nothing of the dropped content went to a dead-letter topic either
    for kind in ("audio", "transcript"):
        assert (
            await read_all(slice_settings, Topics(slice_settings).name(f"deadletter.{kind}")) == []
        )


async def test_policy_change_mid_stream_applies_to_later_records(slice_settings, worker_factory):
    call = next(iter(simulated_calls("acme", 1, seed=31)))
    started = call.events[0]["call_started_at"]
    await publish_records(
        slice_settings, "ingest.audio", "AudioChunk", [_chunk(call.call_id, 0, started=started)]
    )
    worker = await _run_worker(slice_settings, worker_factory)
    async with WorkspaceDirectory(slice_settings) as d:
        await d.update("acme", agent_recording={"agent-1": False})
    await publish_records(
        slice_settings, "ingest.audio", "AudioChunk", [_chunk(call.call_id, 1, started=started)]
    )
    await wait_caught_up(
        slice_settings, group_of(slice_settings), _all_topics(slice_settings), worker=worker
    )
    async with WorkspaceDirectory(slice_settings) as d:
        await d.update("acme", agent_recording={"agent-1": True}, retention_days=7)
    await publish_records(
        slice_settings, "ingest.audio", "AudioChunk", [_chunk(call.call_id, 2, started=started)]
    )
    await wait_caught_up(
        slice_settings, group_of(slice_settings), _all_topics(slice_settings), worker=worker
    )
    audio = sorted(
        (r for r, _ in await _sealed(slice_settings, "audio", "SealedAudioChunk")),
        key=lambda r: r["seq"],
    )
    assert [r["seq"] for r in audio] == [0, 2]
    assert [r["policy_version"] for r in audio] == [1, 3]
    assert audio[1]["expires_at"] == started + timedelta(days=7)


async def test_a_shredded_call_is_unreadable_on_replay_and_never_resealed(
    slice_settings, worker_factory
):
    call = next(iter(simulated_calls("acme", 1, seed=41)))
    started = call.events[0]["call_started_at"]
    first = _chunk(call.call_id, 0, started=started)
    await publish_records(slice_settings, "ingest.audio", "AudioChunk", [first])
    worker = await _run_worker(slice_settings, worker_factory)
    [(sealed, _)] = await _sealed(slice_settings, "audio", "SealedAudioChunk")
    aad = Aad("acme", call.call_id, "audio", "eu")
    async with open_keys(slice_settings) as keys:
        assert await open_artifact(keys.ring, sealed["ciphertext"], aad) == first["payload"]
        shredded = await keys.ring.shred_call("acme", call.call_id)
        assert shredded
        with pytest.raises(KeyDestroyed):  # the sealed copy in Kafka is now noise
            await open_artifact(keys.ring, sealed["ciphertext"], aad)
    # the raw topic still holds the chunk (24 h): replaying it must not revive the call
    await publish_records(
        slice_settings,
        "ingest.audio",
        "AudioChunk",
        [first, _chunk(call.call_id, 1, started=started)],
    )
    await wait_caught_up(
        slice_settings, group_of(slice_settings), _all_topics(slice_settings), worker=worker
    )
    assert len(await _sealed(slice_settings, "audio", "SealedAudioChunk")) == 1


async def test_unknown_workspace_content_is_dead_lettered_without_the_content_and_audited(
    slice_settings, worker_factory
):
    started = datetime.now(UTC) - timedelta(minutes=1)
    stray = _chunk("call-x", 0, started=started, workspace="nobody")
    await publish_records(slice_settings, "ingest.audio", "AudioChunk", [stray], raw=[b"\x00junk"])
    await _run_worker(slice_settings, worker_factory)
    dead = await read_all(slice_settings, Topics(slice_settings).name("deadletter.audio"))
    assert len(dead) == 2
    letters = [get_codec().decode("DeadLetter", m.value) for m in dead]
    assert {d["reason"].split(":")[0] for d in letters} == {"unknown_workspace", "undecodable"}
    for d in letters:
        assert d["value"] == b""  # content withheld; the digest says which record it was
        assert "sha256" in d["reason"]
    audits = [
        get_codec().decode("AuditEvent", m.value)
        for m in await read_all(slice_settings, Topics(slice_settings).audit_events)
    ]
    refused = [a for a in audits if a["action"] == "stream.record.refused"]
    assert refused and refused[0]["workspace_id"] == "nobody" and refused[0]["outcome"] == "DENIED"
    # ... and the worker's audit_log table has it (kept 400 days whatever the retention)
    res = await asyncio.to_thread(
        query, slice_settings,
        "SELECT outcome FROM callvault.audit_log FINAL WHERE action = 'stream.record.refused'",
    )  # fmt: skip
    assert res.rows == [["DENIED"]]
