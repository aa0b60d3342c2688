"""Recordings on the real stack: raw records -> sealers -> staging in SeaweedFS -> an encrypted
stereo MP3, transcript and summary documents and a manifest under the call's prefix."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from callvault.control.keys import open_keys
from callvault.crypto.envelope import Aad
from callvault.crypto.segmented import decrypt_stream
from callvault.settings import Settings
from callvault.simulate import publish_records, simulated_calls
from sinks.objects import layout
from sinks.objects.store import ObjectStore
from sinks.recordings.archive import Archiver
from sinks.recordings.mp3 import iter_frames
from sinks.recordings.staging import EndedCall, Staging
from tests.streams.test_sealing_slice import _chunk, _segment

pytestmark = pytest.mark.integration

CARD = "4532 0151 1283 0366"


async def _eventually(check: Any, what: str, timeout_s: float = 60.0) -> Any:
    """Poll an S3 condition until it holds (S3 has no change feed to await)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def _call(chunks_per_leg: int) -> tuple[str, datetime, list[dict[str, Any]], list[dict[str, Any]]]:
    call = next(iter(simulated_calls("acme", 1, seed=int(time.time_ns() % 1_000_000))))
    started = call.events[0]["call_started_at"]
    events = [dict(e) for e in call.events]
    events[-1]["audio_chunks"] = {"CALLER": chunks_per_leg, "AGENT": chunks_per_leg}
    chunks = []
    for seq in range(chunks_per_leg):
        for leg in ("CALLER", "AGENT"):
            chunks.append(_chunk(call.call_id, seq, started=started, leg=leg))
    return call.call_id, started, events, chunks


async def _manifest(store: ObjectStore, call_id: str, started: datetime) -> dict | None:
    key = layout.manifest_key("acme", call_id, started)
    if await store.head(key) is None:
        return None
    return json.loads(await store.get(key))


async def _open(settings: Settings, store: ObjectStore, entry: dict, aad: Aad) -> bytes:
    body = await store.get(entry["key"])
    assert hashlib.sha256(body).hexdigest() == entry["ciphertext_sha256"]
    async with open_keys(settings) as keys:
        key = await keys.ring.key_for(entry["key_id"], workspace_id="acme", call_id=aad.call_id)
    return b"".join(decrypt_stream(key, [body], aad))


async def test_a_call_becomes_an_encrypted_recording_with_documents(slice_settings, worker_factory):
    settings = slice_settings
    store = ObjectStore(settings)
    call_id, started, events, chunks = _call(chunks_per_leg=4)
    segments = [
        _segment(call_id, f"my card number is {CARD} thanks", started=started),
        _segment(call_id, "Caller paid by card.", started=started, kind="SUMMARY"),
    ]
    worker = worker_factory(settings)
    await worker.wait_healthy()
    # the end first, audio later: the call must not be finished before its last chunk arrived
    await publish_records(settings, "ingest.metadata", "CallEvent", events)
    ended_key = layout.ended_key("acme", call_id)
    await _eventually(lambda: store.head(ended_key), "the end marker")
    await publish_records(settings, "ingest.transcript", "TranscriptSegment", segments)
    await publish_records(settings, "ingest.audio", "AudioChunk", chunks)

    manifest = await _eventually(lambda: _manifest(store, call_id, started), "the manifest")

    rec = manifest["artifacts"]["recording"]
    assert manifest["audio_chunks_missing"] == {"CALLER": 0, "AGENT": 0}
    head = await store.head(rec["key"])
    meta = head["metadata"]
    assert meta["cv-region"] == "eu" and meta["cv-key-id"] == rec["key_id"]
    assert meta["cv-ciphertext-sha256"] == rec["ciphertext_sha256"]
    assert datetime.fromisoformat(meta["cv-expires-at"]) == started + timedelta(days=30)
    mp3 = await _open(settings, store, rec, Aad("acme", call_id, "recording", "eu"))
    assert hashlib.sha256(mp3).hexdigest() == meta["cv-plaintext-sha256"]
    frames = list(iter_frames(mp3))
    assert {(f.sample_rate, f.bit_rate_kbps, f.layer) for f in frames} == {(8000, 64, 3)}
    assert {f.channel_mode for f in frames} <= {"stereo", "joint_stereo"}
    seconds = sum(f.samples for f in frames) / 8000
    assert 4.0 <= seconds <= 4.0 + 0.3  # 4 chunks of 1 s per leg, plus encoder delay/padding
    assert int(meta["cv-duration-ms"]) == 4000

    transcript = json.loads(
        await _open(
            settings,
            store,
            manifest["artifacts"]["transcript"],
            Aad("acme", call_id, "transcript-document", "eu"),
        )
    )
    (utterance,) = transcript["segments"]
    assert CARD not in utterance["text"] and "card number is" in utterance["text"]
    summary = json.loads(
        await _open(
            settings,
            store,
            manifest["artifacts"]["summary"],
            Aad("acme", call_id, "summary-document", "eu"),
        )
    )
    assert [s["text"] for s in summary["segments"]] == ["Caller paid by card."]
    # staging is gone, and every object of the call sits under its one prefix
    assert await store.list_objects(layout.staging_prefix("acme", call_id)) == []
    names = sorted(
        o.key.rsplit("/", 1)[1]
        for o in await store.list_objects(layout.call_prefix("acme", call_id, started))
    )
    assert names == ["manifest.json", "recording.mp3.cvs", "summary.json.cvs",
                     "transcript.json.cvs"]  # fmt: skip

    # a summary generated after the call was finished is merged into the summary document
    late = _segment(call_id, "Follow-up promised.", started=started, kind="SUMMARY",
                    segment_id="s-late")  # fmt: skip
    await publish_records(settings, "ingest.transcript", "TranscriptSegment", [late])

    async def amended() -> dict | None:
        m = await _manifest(store, call_id, started)
        return m if m and m.get("amended_at") else None

    manifest2 = await _eventually(amended, "the amended manifest")
    assert manifest2["artifacts"]["recording"] == rec  # the recording is written once
    summary = json.loads(
        await _open(
            settings,
            store,
            manifest2["artifacts"]["summary"],
            Aad("acme", call_id, "summary-document", "eu"),
        )
    )
    assert sorted(s["text"] for s in summary["segments"]) == [
        "Caller paid by card.", "Follow-up promised."
    ]  # fmt: skip
    store.close()


async def test_finishing_again_reuses_the_recording_written_once(slice_settings, tmp_path):
    """Two finishers of one call (a crash between upload and manifest, or a rebalance): the
    second finds the recording there (If-None-Match) and the object is not replaced."""
    from callvault.crypto.envelope import seal
    from schemas.codec import get_codec
    from streams.governance import expires_at

    settings = slice_settings
    store = ObjectStore(settings)
    staging = Staging(store)
    call_id, started, _events, chunks = _call(chunks_per_leg=2)
    codec = get_codec()
    async with open_keys(settings) as keys:

        class _Keys:
            async def key_for(self, key_id, *, workspace_id, call_id):
                return await keys.ring.key_for(key_id, workspace_id=workspace_id, call_id=call_id)

            async def call_key(self, workspace_id, call_id, call_started_at):
                return await keys.ring.call_key(workspace_id, call_id,
                                                call_started_at=call_started_at)  # fmt: skip

        key_id, key = await keys.ring.call_key("acme", call_id, call_started_at=started)
        expires = expires_at(started, 30)
        sealed = []
        for c in chunks:
            sealed.append(codec.encode("SealedAudioChunk", {
                **{k: c[k] for k in ("call_id", "workspace_id", "leg", "seq", "first_rtp_seq",
                                     "rtp_timestamp", "captured_at", "codec", "sample_rate",
                                     "missing_packets")},
                "region": "eu", "expires_at": expires, "payload_bytes": len(c["payload"]),
                "ciphertext": seal(key, key_id, c["payload"], Aad("acme", call_id, "audio", "eu")),
                "sealed_at": started, "policy_version": 1,
            }))  # fmt: skip
        ended = EndedCall("acme", call_id, "eu", started, started + timedelta(seconds=2), 2000,
                          expires, {"CALLER": 2, "AGENT": 2}, datetime.now(UTC))  # fmt: skip

        async def stage_all() -> None:
            await staging.stage("acme", call_id, "audio", 0, 10, sealed, expires)
            await staging.mark_ended(ended)

        first = Archiver(store, _Keys(), tmp_dir=tmp_path / "rec")
        await stage_all()
        out1 = await first.finish("acme", call_id, now=datetime.now(UTC))
        assert out1.status == "finished"
        rec_key = out1.manifest["artifacts"]["recording"]["key"]
        body1 = await store.get(rec_key)
        # the same records staged again, finished by a fresh archiver (another worker)
        await stage_all()
        out2 = await Archiver(store, _Keys(), tmp_dir=tmp_path / "rec").finish(
            "acme", call_id, now=datetime.now(UTC)
        )
        assert out2.status == "amended" and out2.late_audio_objects == 1
        assert await store.get(rec_key) == body1
        assert out2.manifest["artifacts"]["recording"] == out1.manifest["artifacts"]["recording"]
        # and the manifest gone (a crash after the upload): the upload is refused, the object
        # already there is described in the new manifest, unchanged
        await store.delete([layout.manifest_key("acme", call_id, started)])
        await stage_all()
        out3 = await Archiver(store, _Keys(), tmp_dir=tmp_path / "rec").finish(
            "acme", call_id, now=datetime.now(UTC)
        )
        assert out3.status == "finished"
        assert await store.get(rec_key) == body1
        assert out3.manifest["artifacts"]["recording"] == out1.manifest["artifacts"]["recording"]
        assert list((tmp_path / "rec").iterdir()) == []  # no temp file left behind

        # erased while staged (retention or an erasure request shredded the key): nothing of
        # it is written, and what was staged is deleted
        await store.delete_prefix(layout.call_prefix("acme", call_id, started))
        await stage_all()
        await keys.ring.shred_call("acme", call_id)
        out4 = await Archiver(store, _Keys(), tmp_dir=tmp_path / "rec").finish(
            "acme", call_id, now=datetime.now(UTC)
        )
        assert out4.status == "erased"
        assert await store.list_objects(layout.call_prefix("acme", call_id, started)) == []
        assert await store.list_objects(layout.staging_prefix("acme", call_id)) == []
    store.close()
