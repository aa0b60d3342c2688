"""The pure governance steps: suppression, redaction, region, retention, sealing."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from callvault.control.workspaces import WorkspacePolicy
from callvault.crypto import Aad, DecryptionFailed, unseal
from callvault.simulate import call_events
from schemas.codec import get_codec
from streams.governance import (
    CallKey,
    Dropped,
    content_verdict,
    seal_audio_chunk,
    seal_transcript_segment,
)
from streams.metadata import seal_call_event

T0 = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
NOW = T0 + timedelta(minutes=5)
LATER = datetime.now(UTC) + timedelta(hours=1)  # simulated calls happen "now"
KEY = CallKey("ck-1", bytes(range(32)))
POLICY = WorkspacePolicy("acme", "Acme", "eu", retention_days=30, version=4)


def chunk(**kw):
    base = {
        "call_id": "c1", "workspace_id": "acme", "leg": "CALLER", "seq": 0, "first_rtp_seq": 7,
        "rtp_timestamp": 160, "captured_at": T0 + timedelta(seconds=2), "codec": "PCMU",
        "sample_rate": 8000, "payload": bytes(range(256)) * 31, "missing_packets": 0,
        "call_started_at": T0, "agent_id": "agent-1", "suppressed": False,
    }  # fmt: skip
    return {**base, **kw}


def segment(text: str, **kw):
    base = {
        "call_id": "c1", "workspace_id": "acme", "segment_id": "s1", "kind": "SEGMENT",
        "speaker": "CALLER", "text": text, "started_at": T0 + timedelta(seconds=9),
        "ended_at": None, "language": "en", "confidence": None, "call_started_at": T0,
        "agent_id": "agent-1", "suppressed": False,
    }  # fmt: skip
    return {**base, **kw}


def test_audio_is_sealed_bound_to_its_call_and_stamped():
    sealed = seal_audio_chunk(chunk(), POLICY, KEY, now=NOW)
    get_codec().encode("SealedAudioChunk", sealed)
    assert sealed["region"] == "eu" and sealed["expires_at"] == T0 + timedelta(days=30)
    assert sealed["payload_bytes"] == 256 * 31
    assert bytes(range(256)) not in sealed["ciphertext"]
    right = Aad("acme", "c1", "audio", "eu")
    assert unseal(KEY.key, sealed["ciphertext"], right) == chunk()["payload"]
    for wrong in (
        Aad("globex", "c1", "audio", "eu"),
        Aad("acme", "c2", "audio", "eu"),
        Aad("acme", "c1", "transcript", "eu"),
        Aad("acme", "c1", "audio", "na"),
    ):
        with pytest.raises(DecryptionFailed):
            unseal(KEY.key, sealed["ciphertext"], wrong)


def test_transcript_is_redacted_before_it_is_sealed():
    text = "my card is 4532 0151 1283 0366 and the cvv is 123"
    sealed = seal_transcript_segment(segment(text), POLICY, KEY, now=NOW)
    get_codec().encode("SealedTranscriptSegment", sealed)
    clear = unseal(KEY.key, sealed["ciphertext"], Aad("acme", "c1", "transcript", "eu")).decode()
    assert "4532" not in clear and "0366" not in clear and "123" not in clear
    assert sealed["redaction_count"] == 2
    assert "[REDACTED:card]" in clear


def test_a_summary_is_its_own_artifact_kind():
    sealed = seal_transcript_segment(
        segment("Caller booked Thursday.", kind="SUMMARY", speaker="SYSTEM"), POLICY, KEY, now=NOW
    )
    with pytest.raises(DecryptionFailed):
        unseal(KEY.key, sealed["ciphertext"], Aad("acme", "c1", "transcript", "eu"))
    assert unseal(KEY.key, sealed["ciphertext"], Aad("acme", "c1", "summary", "eu"))


def test_every_artifact_of_a_call_expires_at_the_same_instant():
    call = call_events("acme", rng=random.Random(5))
    started = call.events[0]["call_started_at"]
    expiries = {
        seal_call_event(ev, POLICY, pepper=b"p", key=KEY, now=LATER)["expires_at"]
        for ev in call.events
    }
    expiries.add(
        seal_audio_chunk(chunk(call_started_at=started), POLICY, KEY, now=LATER)["expires_at"]
    )
    expiries.add(
        seal_transcript_segment(segment("hi", call_started_at=started), POLICY, KEY, now=LATER)[
            "expires_at"
        ]
    )
    assert expiries == {started + timedelta(days=30)}


def test_content_of_suppressed_calls_and_silenced_agents_is_dropped():
    assert content_verdict(chunk(), POLICY, known_suppressed=False) is None
    assert content_verdict(chunk(suppressed=True), POLICY, known_suppressed=False) == Dropped(
        "suppressed"
    )
    assert content_verdict(chunk(), POLICY, known_suppressed=True) == Dropped("suppressed")
    off = WorkspacePolicy("acme", "Acme", "eu", agent_recording={"agent-1": False})
    assert content_verdict(chunk(), off, known_suppressed=False) == Dropped("recording_off")
    # a policy change applies to the next record: same chunk, newer policy
    default_off = WorkspacePolicy("acme", "Acme", "eu", recording_default=False, version=5)
    assert content_verdict(chunk(agent_id=None), default_off, known_suppressed=False) == Dropped(
        "recording_off"
    )


def test_sealed_metadata_keeps_full_numbers_only_encrypted():
    ev = call_events("acme", rng=random.Random(6)).events[-1]
    sealed = seal_call_event(ev, POLICY, pepper=b"p", key=KEY, now=LATER)
    wire = get_codec().encode("SealedCallEvent", sealed)
    for number in (ev["caller_number"], ev["callee_number"]):
        assert number.encode() not in wire
        assert number.lstrip("+").encode() not in wire
    clear = unseal(
        KEY.key, sealed["numbers_ciphertext"], Aad("acme", ev["call_id"], "numbers", "eu")
    )
    assert json.loads(clear) == {"caller": ev["caller_number"], "callee": ev["callee_number"]}


def test_workspace_suppression_rules_apply_even_if_the_edge_missed_them():
    ev = call_events("acme", rng=random.Random(7)).events[-1]
    ev = {**ev, "caller_number": "+448001234567", "suppressed": False, "suppression_reason": None}
    ruled = WorkspacePolicy("acme", "Acme", "eu", suppression_rules=["caller_prefix:+44800"])
    sealed = seal_call_event(ev, ruled, pepper=b"p", key=KEY, now=LATER)
    assert sealed["suppressed"] is True
    assert sealed["suppression_reason"] == "rule:caller_prefix:+44800"


def test_tool_arguments_are_redacted_and_counted():
    ev = call_events("acme", rng=random.Random(8)).events[-1]
    tool = {
        "name": "take_payment", "invoked_at": T0, "duration_ms": 5, "status": "OK",
        "arguments_redacted": '{"card": "4111 1111 1111 1111", "amount": "12.50"}',
    }  # fmt: skip
    sealed = seal_call_event(
        {**ev, "tool_invocations": [tool]}, POLICY, pepper=b"p", key=KEY, now=LATER
    )
    [inv] = sealed["tool_invocations"]
    assert "4111" not in inv["arguments_redacted"] and "12.50" in inv["arguments_redacted"]
    assert sealed["redaction_count"] == 1
