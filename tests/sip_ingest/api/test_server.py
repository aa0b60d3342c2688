"""The agent API end to end: HTTP in, Avro on the real Kafka out."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from callvault.topics import Topics
from schemas.codec import get_codec
from tests.kafka_read import read_all
from tests.sip_ingest.api.conftest import NOW, ApiEnv

CALL = "call-7f3a"
SEGMENTS = [
    {
        "segment_id": "s1",
        "speaker": "CALLER",
        "text": "Hi, I'd like to move my appointment.",
        "started_at": "2026-03-01T13:00:00+01:00",
        "ended_at": "2026-03-01T13:00:03.250+01:00",
        "language": "en-GB",
        "confidence": 0.93,
    },
    {
        "segment_id": "s2",
        "speaker": "AGENT",
        "text": "Of course. Which day suits you?",
        "started_at": "2026-03-01T12:00:04Z",
    },
    {
        "segment_id": "s3",
        "speaker": "SYSTEM",
        "text": "(hold)",
        "started_at": "2026-03-01T12:00:09Z",
    },
]


async def transcript_on_kafka(env: ApiEnv) -> list[Any]:
    assert await env.publisher.flush(30)
    return await read_all(env.settings, Topics(env.settings).name("ingest.transcript"))


def counter(env: ApiEnv, name: str, **labels: str) -> float:
    return env.registry.get_sample_value(name, labels) or 0.0


async def test_requests_without_the_right_bearer_token_are_refused(api_env: ApiEnv) -> None:
    api_env.calls.register(CALL, "acme")
    body = {"workspace_id": "acme", "segments": SEGMENTS}
    path = f"/v1/calls/{CALL}/transcript"
    for headers in (
        {},
        {"Authorization": "Bearer not-the-token"},
        {"Authorization": f"Basic {api_env.token}"},
        {"Authorization": f"Bearer {api_env.token}x"},
        {"Authorization": "Bearer"},
    ):
        response = await api_env.post(path, body, headers=headers)
        assert response.status == 401, headers
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert api_env.token not in await response.text()
    assert counter(api_env, "callvault_ingest_api_auth_failures_total") == 5
    assert await transcript_on_kafka(api_env) == []
    # Probes and scrapers need no token.
    assert (await api_env.http.get("/healthz")).status == 200
    assert (await api_env.http.get("/metrics")).status == 200


async def test_transcript_segments_land_on_kafka_keyed_by_call(api_env: ApiEnv) -> None:
    started = datetime(2026, 3, 1, 11, 59, tzinfo=UTC)
    api_env.calls.register(CALL, "acme", agent_id="agent-7", started_at=started)
    response = await api_env.post(
        f"/v1/calls/{CALL}/transcript", {"workspace_id": "acme", "segments": SEGMENTS}
    )
    assert response.status == 202, await response.text()
    assert await response.json() == {"accepted": 3}
    messages = await transcript_on_kafka(api_env)
    assert [m.key for m in messages] == [CALL.encode()] * 3
    decoded = [get_codec().decode("TranscriptSegment", m.value) for m in messages]
    assert [d["segment_id"] for d in decoded] == ["s1", "s2", "s3"]
    first = decoded[0]
    assert first == {
        "call_id": CALL,
        "workspace_id": "acme",
        "segment_id": "s1",
        "kind": "SEGMENT",
        "speaker": "CALLER",
        "text": "Hi, I'd like to move my appointment.",
        "started_at": datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC),
        "ended_at": datetime(2026, 3, 1, 12, 0, 3, 250_000, tzinfo=UTC),
        "language": "en-GB",
        "confidence": pytest.approx(0.93),
        # the call's context rides on every content record (processors need it, see AudioChunk)
        "call_started_at": started,
        "agent_id": "agent-7",
        "suppressed": False,
    }
    assert decoded[1]["ended_at"] is None and decoded[1]["confidence"] is None


async def test_summary_lands_as_a_system_summary_segment(api_env: ApiEnv) -> None:
    api_env.calls.register(CALL, "acme")
    response = await api_env.post(
        f"/v1/calls/{CALL}/summary",
        {
            "workspace_id": "acme",
            "text": "Caller moved the appointment to Tuesday.",
            "language": "en",
        },
    )
    assert response.status == 202, await response.text()
    (message,) = await transcript_on_kafka(api_env)
    assert message.key == CALL.encode()
    summary = get_codec().decode("TranscriptSegment", message.value)
    assert summary["kind"] == "SUMMARY" and summary["speaker"] == "SYSTEM"
    assert summary["segment_id"] == "summary"
    assert summary["text"] == "Caller moved the appointment to Tuesday."
    assert summary["started_at"] == NOW and summary["language"] == "en"


async def test_tool_invocations_go_to_the_call_and_fit_its_metadata(api_env: ApiEnv) -> None:
    api_env.calls.register(CALL, "acme")
    invocations = [
        {
            "name": "book_appointment",
            "invoked_at": "2026-03-01T12:00:05Z",
            "duration_ms": 180,
            "status": "OK",
            "arguments_redacted": '{"day": "tuesday", "card": "****"}',
        },
        {"name": "lookup_customer", "invoked_at": "2026-03-01T14:00:06+02:00", "status": "ERROR"},
    ]
    response = await api_env.post(
        f"/v1/calls/{CALL}/tool-invocations", {"workspace_id": "acme", "invocations": invocations}
    )
    assert response.status == 202, await response.text()
    stored = api_env.calls.tool_invocations(CALL)
    assert [i["name"] for i in stored] == ["book_appointment", "lookup_customer"]
    assert stored[1]["invoked_at"] == datetime(2026, 3, 1, 12, 0, 6, tzinfo=UTC)
    # The call layer publishes them inside the call's metadata: they fit the contract, and go
    # through the publisher to Kafka like every CallEvent.
    event = {
        "event_id": "e1",
        "call_id": CALL,
        "workspace_id": "acme",
        "kind": "ENDED",
        "occurred_at": NOW,
        "call_started_at": NOW - timedelta(minutes=3),
        "caller_number": "+447911123456",
        "callee_number": "+442071234567",
        "direction": "INBOUND",
        "tool_invocations": stored,
    }
    topic = Topics(api_env.settings).name("ingest.metadata")
    assert api_env.publisher.publish_avro(topic, CALL.encode(), "CallEvent", event)
    assert await api_env.publisher.flush(30)
    (message,) = await read_all(api_env.settings, topic)
    decoded = get_codec().decode("CallEvent", message.value)
    assert decoded["tool_invocations"] == [
        {
            "name": "book_appointment",
            "invoked_at": datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC),
            "duration_ms": 180,
            "status": "OK",
            "arguments_redacted": '{"day": "tuesday", "card": "****"}',
        },
        {
            "name": "lookup_customer",
            "invoked_at": datetime(2026, 3, 1, 12, 0, 6, tzinfo=UTC),
            "duration_ms": None,
            "status": "ERROR",
            "arguments_redacted": None,
        },
    ]


def _segment(**changes: Any) -> dict[str, Any]:
    segment = dict(SEGMENTS[1])
    segment.update(changes)
    return {k: v for k, v in segment.items() if v is not None}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("transcript", b"{not json", ""),
        ("transcript", [], ""),
        ("transcript", {"segments": [_segment()]}, "workspace_id"),
        ("transcript", {"workspace_id": "acme", "segments": []}, "segments"),
        (
            "transcript",
            {"workspace_id": "acme", "segments": [_segment(speaker="BOT")]},
            "segments[0].speaker",
        ),
        (
            "transcript",
            {"workspace_id": "acme", "segments": [_segment(started_at="2026-03-01T12:00:00")]},
            "segments[0].started_at",
        ),
        (
            "transcript",
            {"workspace_id": "acme", "segments": [_segment(started_at=1772366400)]},
            "segments[0].started_at",
        ),
        (
            "transcript",
            {"workspace_id": "acme", "segments": [_segment(), _segment(text="x" * 10_001)]},
            "segments[1].text",
        ),
        (
            "transcript",
            {"workspace_id": "acme", "segments": [_segment(confidence=1.5)]},
            "segments[0].confidence",
        ),
        (
            "transcript",
            {"workspace_id": "acme", "segments": [_segment(confidence="0.9")]},
            "segments[0].confidence",
        ),
        (
            "transcript",
            {"workspace_id": "acme", "segments": [_segment(ended_at="2026-03-01T11:00:00Z")]},
            "segments[0].ended_at",
        ),
        (
            "transcript",
            {"workspace_id": "acme", "segments": [_segment(colour="blue")]},
            "segments[0].colour",
        ),
        (
            "transcript",
            {"workspace_id": "acme", "segments": [_segment(segment_id="a b")]},
            "segments[0].segment_id",
        ),
        ("summary", {"workspace_id": "acme"}, "text"),
        (
            "summary",
            {"workspace_id": "acme", "text": "ok", "language": "english please"},
            "language",
        ),
        (
            "tool-invocations",
            {
                "workspace_id": "acme",
                "invocations": [
                    {"name": "x", "invoked_at": "2026-03-01T12:00:00Z", "status": "MAYBE"}
                ],
            },
            "invocations[0].status",
        ),
        (
            "tool-invocations",
            {
                "workspace_id": "acme",
                "invocations": [
                    {
                        "name": "x",
                        "invoked_at": "2026-03-01T12:00:00Z",
                        "status": "OK",
                        "duration_ms": -1,
                    }
                ],
            },
            "invocations[0].duration_ms",
        ),
    ],
)
async def test_invalid_bodies_are_refused_naming_the_field(
    api_env: ApiEnv, path: str, body: Any, field: str
) -> None:
    api_env.calls.register(CALL, "acme")
    if isinstance(body, bytes):
        response = await api_env.http.post(
            f"/v1/calls/{CALL}/{path}", data=body, headers=api_env.auth
        )
    else:
        response = await api_env.post(f"/v1/calls/{CALL}/{path}", body)
    assert response.status == 400
    answer = await response.json()
    assert field in [f["field"] for f in answer["fields"]], answer
    if not field:
        assert "JSON" in answer["error"]
    assert "x" * 100 not in answer["error"]  # values are not echoed back
    assert await transcript_on_kafka(api_env) == []


async def test_a_malformed_call_id_is_refused(api_env: ApiEnv) -> None:
    response = await api_env.post("/v1/calls/..%20x/summary", {"workspace_id": "a", "text": "t"})
    assert response.status == 400
    assert (await response.json())["fields"][0]["field"] == "call_id"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("transcript", {"segments": SEGMENTS[:1]}),
        ("summary", {"text": "A summary."}),
        (
            "tool-invocations",
            {"invocations": [{"name": "x", "invoked_at": "2026-03-01T12:00:00Z", "status": "OK"}]},
        ),
    ],
)
async def test_unknown_calls_and_other_workspaces_are_refused(
    api_env: ApiEnv, path: str, body: dict[str, Any]
) -> None:
    api_env.calls.register(CALL, "acme")
    unknown = await api_env.post(f"/v1/calls/call-nobody/{path}", {"workspace_id": "acme", **body})
    assert unknown.status == 404
    foreign = await api_env.post(f"/v1/calls/{CALL}/{path}", {"workspace_id": "globex", **body})
    assert foreign.status == 403
    assert "acme" not in (await foreign.json())["error"]  # the owner is not disclosed
    assert await transcript_on_kafka(api_env) == []
    assert api_env.calls.tool_invocations(CALL) == []


async def test_oversized_body_is_refused(api_env: ApiEnv) -> None:
    api_env.calls.register(CALL, "acme")
    response = await api_env.http.post(
        f"/v1/calls/{CALL}/summary",
        data=b'{"workspace_id": "acme", "text": "' + b"a" * (1024 * 1024) + b'"}',
        headers=api_env.auth,
    )
    assert response.status == 413


async def test_suppressed_calls_publish_no_transcript(api_env: ApiEnv) -> None:
    api_env.calls.register(CALL, "acme", suppressed=True)
    api_env.calls.register("call-quiet-agent", "acme", recording_enabled=False)
    response = await api_env.post(
        f"/v1/calls/{CALL}/transcript", {"workspace_id": "acme", "segments": SEGMENTS}
    )
    assert response.status == 202
    assert await response.json() == {
        "accepted": 0,
        "discarded": 3,
        "reason": "recording is off for this call",
    }
    response = await api_env.post(
        "/v1/calls/call-quiet-agent/summary", {"workspace_id": "acme", "text": "A summary."}
    )
    assert (await response.json())["accepted"] == 0
    assert await transcript_on_kafka(api_env) == []
    assert counter(api_env, "callvault_ingest_api_discarded_total") == 4


async def test_records_the_publisher_cannot_take_answer_503(api_env: ApiEnv) -> None:
    api_env.calls.register(CALL, "acme")
    await api_env.publisher.stop()
    response = await api_env.post(
        f"/v1/calls/{CALL}/transcript", {"workspace_id": "acme", "segments": SEGMENTS}
    )
    assert response.status == 503
    assert response.headers["Retry-After"] == "5"
    assert counter(api_env, "callvault_ingest_dropped_total", reason="not_running") == 3
    assert (await api_env.http.get("/healthz")).status == 503


async def test_metrics_and_health(api_env: ApiEnv) -> None:
    response = await api_env.http.get("/metrics")
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    text = await response.text()
    for name in (
        "callvault_ingest_published_total",
        "callvault_ingest_spooled_total",
        'callvault_ingest_dropped_total{reason="journal_full"} 0.0',
        "callvault_ingest_journal_bytes",
        "callvault_ingest_queue_depth",
        "callvault_ingest_kafka_up",
    ):
        assert name in text
    health = await (await api_env.http.get("/healthz")).json()
    assert health["status"] == "ok" and health["spooling"] is False


async def test_the_token_never_reaches_the_logs(
    api_env: ApiEnv, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    api_env.calls.register(CALL, "acme")
    wrong = "Bearer sk-live-some-other-systems-secret"
    caplog.set_level(logging.DEBUG)
    with capture_logs() as captured:
        ok = await api_env.post(f"/v1/calls/{CALL}/summary", {"workspace_id": "acme", "text": "S."})
        bad = await api_env.post(
            f"/v1/calls/{CALL}/summary",
            {"workspace_id": "acme", "text": "S."},
            headers={"Authorization": wrong},
        )
        invalid = await api_env.post(f"/v1/calls/{CALL}/summary", {"workspace_id": "acme"})
    assert (ok.status, bad.status, invalid.status) == (202, 401, 400)
    assert any(e["event"] == "api_auth_refused" for e in captured)
    assert any(e["event"] == "api_request" for e in captured)
    logged = repr(captured) + caplog.text + "".join(capsys.readouterr())
    assert api_env.token not in logged
    assert "some-other-systems-secret" not in logged
