"""Governed access for people: ``callvault recordings get`` / ``transcripts get`` decrypt a stored
call's artifacts after the permission check, audit every access (and every refusal), and refuse
a shredded call with a clear error."""

from __future__ import annotations

import asyncio
import hashlib
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from callvault.control.keys import open_keys
from callvault.control.workspaces import WorkspaceDirectory, WorkspacePolicy
from callvault.settings import Settings
from callvault.topics import ensure_topics
from schemas.codec import get_codec
from sinks.objects.store import ObjectStore
from sinks.recordings.archive import Archiver
from sinks.recordings.mp3 import iter_frames
from sinks.recordings.staging import EndedCall, Staging
from streams.governance import CallKey, seal_audio_chunk, seal_transcript_segment
from tests.callvault.cli.helpers import ok_json as _json
from tests.callvault.control.keyenv import audit_events
from tests.conftest import topic_prefix
from tests.streams.test_sealing_slice import _chunk, _segment

pytestmark = pytest.mark.integration

CALL = "c-0f6a8e12"
STARTED = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


@pytest.fixture
def settings(stack_settings: Settings, tmp_path: Path) -> Settings:
    prefix = topic_prefix("r")
    settings = stack_settings.model_copy(
        update={
            "home": tmp_path / "home",
            "kafka": stack_settings.kafka.model_copy(update={"topic_prefix": prefix}),
            "s3": stack_settings.s3.model_copy(update={"key_prefix": prefix.replace(".", "/")}),
        }
    )
    asyncio.run(_finished_call(settings, tmp_path))
    return settings


async def _finished_call(settings: Settings, tmp: Path) -> None:
    await ensure_topics(settings)
    async with WorkspaceDirectory(settings) as d:
        await d.create("acme", region="eu", retention_days=30)
    await store_finished_call(settings, tmp, CALL, STARTED, ["I'd like to change my order."])


async def store_finished_call(
    settings: Settings, tmp: Path, call: str, started: datetime, texts: list[str],
    summary: str | None = None,
) -> None:  # fmt: skip
    """A call of workspace acme (eu, 30 days) stored the way the worker stores one: sealed
    records staged, then finished (2 s of audio, a transcript, optionally a summary)."""
    policy = WorkspacePolicy("acme", "Acme", "eu", retention_days=30)
    codec, now = get_codec(), datetime.now(UTC)
    store = ObjectStore(settings)
    async with open_keys(settings) as keys:
        key = CallKey(*await keys.ring.call_key("acme", call, call_started_at=started))
        chunks = [_chunk(call, seq, started=started, leg=leg)
                  for seq in range(2) for leg in ("CALLER", "AGENT")]  # fmt: skip
        audio = [codec.encode("SealedAudioChunk", seal_audio_chunk(c, policy, key, now=now))
                 for c in chunks]  # fmt: skip
        segments = [_segment(call, text, started=started) for text in texts]
        if summary is not None:
            segments.append(_segment(call, summary, started=started, kind="SUMMARY"))
        sealed = [codec.encode("SealedTranscriptSegment",
                               seal_transcript_segment(s, policy, key, now=now))
                  for s in segments]  # fmt: skip
        staging = Staging(store)
        expires = started + timedelta(days=30)
        await staging.stage("acme", call, "audio", 0, 0, audio, expires)
        await staging.stage("acme", call, "transcript", 0, 0, sealed, expires)
        await staging.mark_ended(EndedCall("acme", call, "eu", started, started, 2000, expires,
                                           {"CALLER": 2, "AGENT": 2}, now))  # fmt: skip

        class _Keys:
            async def key_for(self, key_id, *, workspace_id, call_id):
                return await keys.ring.key_for(key_id, workspace_id=workspace_id, call_id=call_id)

            async def call_key(self, workspace_id, call_id, call_started_at):
                return await keys.ring.call_key(workspace_id, call_id,
                                                call_started_at=call_started_at)  # fmt: skip

        outcome = await Archiver(store, _Keys(), tmp_dir=tmp / "rec").finish("acme", call, now=now)
        assert outcome.status == "finished"
    store.close()


def test_people_get_what_their_role_allows_and_every_access_is_audited(
    settings, cli, users, tmp_path
):
    tokens = users("acme", olivia="owner", mia="member", aud="auditor")
    owner, member = {"token": tokens["olivia"]}, {"token": tokens["mia"]}

    # who may view recordings sees what is stored (metadata only); an auditor may not
    day = STARTED.date().isoformat()
    listed = _json(cli("recordings", "list", "--workspace", "acme", "--from", day, "--to", day,
                       "--json", token=member["token"]))  # fmt: skip
    assert [(r["call_id"], r["artifacts"]) for r in listed] == [(CALL, "recording,transcript")]
    assert listed[0]["duration_s"] == 2.0 and listed[0]["bytes"] > 0
    code, _, err = cli("recordings", "list", "--workspace", "acme", token=tokens["aud"])
    assert code != 0 and "lacks recordings.view" in err

    # an owner downloads the recording: an MP3 of the call's length, 0600, hash as stored
    out = tmp_path / "call.mp3"
    got = _json(cli("recordings", "get", CALL, "--workspace", "acme", "--out", str(out),
                    "--json", token=owner["token"]))  # fmt: skip
    mp3 = out.read_bytes()
    assert hashlib.sha256(mp3).hexdigest() == got["sha256"] and got["bytes"] == len(mp3)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert abs(sum(f.samples for f in iter_frames(mp3)) / 8000 - 2.0) < 0.3

    # a member may read the transcript, not download the recording
    code, text, _ = cli("transcripts", "get", CALL, "--workspace", "acme", token=member["token"])
    assert code == 0
    assert [s["text"] for s in json.loads(text)["segments"]] == ["I'd like to change my order."]
    denied = tmp_path / "denied.mp3"
    code, _, err = cli("recordings", "get", CALL, "--workspace", "acme", "--out", str(denied),
                       token=member["token"])  # fmt: skip
    assert code != 0 and "lacks recordings.download" in err and not denied.exists()

    events = [(e["action"], e["actor"]["id"], e["outcome"], e["target"])
              for e in asyncio.run(audit_events(settings))]  # fmt: skip
    assert ("recording.download", "olivia", "SUCCESS", f"call:{CALL}") in events
    assert ("transcript.view", "mia", "SUCCESS", f"call:{CALL}") in events
    assert ("recording.list", "mia", "SUCCESS", "workspace:acme") in events
    assert any(a == "recording.download" and who == "mia" and outcome == "DENIED"
               for a, who, outcome, _ in events)  # fmt: skip

    # shredded (expired or erased): a clear refusal, never noise
    async def shred() -> None:
        async with open_keys(settings) as keys:
            await keys.ring.shred_call("acme", CALL)

    asyncio.run(shred())
    code, _, err = cli("recordings", "get", CALL, "--workspace", "acme", "--out",
                       str(tmp_path / "gone.mp3"), token=owner["token"])  # fmt: skip
    assert code != 0 and "can no longer be decrypted" in err
