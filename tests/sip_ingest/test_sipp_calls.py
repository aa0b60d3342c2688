"""Real SIP peers (sipp) against a real ingest node, with Kafka behind it."""

from __future__ import annotations

import time

import pytest

from callvault.control.trunks import TrunkDirectory
from callvault.topics import Topics
from schemas.codec import get_codec
from sip_ingest.media.wav import encode_g711, sine_pcm16
from tests.kafka_read import read_all
from tests.sip_ingest.conftest import NodeEnv, free_udp_port, node_settings, start_node
from tests.sip_ingest.sipp import run_sipp

pytestmark = pytest.mark.integration


async def call_events(env: NodeEnv) -> list[dict]:
    assert await env.node.publisher.flush()
    codec = get_codec()
    msgs = await read_all(env.settings, Topics(env.settings).ingest_metadata)
    return [codec.decode("CallEvent", m.value) for m in msgs]


async def audio_of(env: NodeEnv, call_id: str) -> list[dict]:
    assert await env.node.publisher.flush()
    codec = get_codec()
    msgs = await read_all(env.settings, Topics(env.settings).name("ingest.audio"))
    chunks = [codec.decode("AudioChunk", m.value) for m in msgs]
    return sorted((c for c in chunks if c["call_id"] == call_id), key=lambda c: c["seq"])


async def audit_actions(env: NodeEnv) -> list[dict]:
    assert await env.node.publisher.flush()
    codec = get_codec()
    msgs = await read_all(env.settings, Topics(env.settings).audit_events)
    return [codec.decode("AuditEvent", m.value) for m in msgs]


def tone_file(env: NodeEnv, seconds: int = 3) -> tuple[str, bytes]:
    audio = encode_g711(sine_pcm16(440, seconds * 1000), "PCMU")
    path = env.workdir / "tone.ulaw"  # sipp's rtp_stream sends a file's bytes as they are
    path.write_bytes(audio)
    return str(path), audio


def placeholders(env: NodeEnv, **extra: str) -> dict[str, str]:
    cred = env.trunk
    return {"USER": cred.credential.username, "PASS": cred.password, "PAUSE_MS": "3500", **extra}


async def test_authenticated_call_publishes_metadata_and_exact_audio(node_env: NodeEnv):
    path, audio = tone_file(node_env)
    result = await run_sipp(
        "uac_auth_rtp.xml", node_env.sip, node_env.workdir,
        local_port=free_udp_port(), media_port=free_udp_port(),
        placeholders=placeholders(node_env, WAV=path),
    )  # fmt: skip
    assert result.returncode == 0, result.errors + result.output[-2000:]

    events = await call_events(node_env)
    assert [e["kind"] for e in events] == ["STARTED", "ANSWERED", "ENDED"]
    ended = events[-1]
    assert ended["workspace_id"] == "acme" and ended["trunk_id"] == "pbx1"
    assert ended["caller_number"] == "+4477009001" and ended["agent_id"] == "agent-7"
    assert ended["end_reason"] == "CALLER_HANGUP" and ended["codec"] == "PCMU"
    assert ended["packets_received"] == len(audio) // 160 and ended["packets_lost"] == 0
    assert ended["duration_ms"] >= 3000
    assert len({e["call_id"] for e in events}) == 1

    chunks = await audio_of(node_env, ended["call_id"])
    assert [c["seq"] for c in chunks] == list(range(len(chunks)))
    assert {c["leg"] for c in chunks} == {"CALLER"}
    assert b"".join(c["payload"] for c in chunks) == audio  # byte-exact, in order


async def test_wrong_password_is_refused_and_audited(node_env: NodeEnv):
    result = await run_sipp(
        "uac_auth_rtp.xml", node_env.sip, node_env.workdir,
        local_port=free_udp_port(), media_port=free_udp_port(),
        placeholders=placeholders(node_env, PASS="not-the-password", WAV=tone_file(node_env)[0]),
        timeout_s=10,
    )  # fmt: skip
    assert result.returncode != 0
    assert "SIP/2.0 403" in result.messages
    assert await call_events(node_env) == []
    failures = [a for a in await audit_actions(node_env) if a["action"] == "sip.auth.failure"]
    assert failures and failures[0]["outcome"] == "DENIED"
    assert failures[0]["workspace_id"] == "acme"
    assert node_env.trunk.password not in repr(failures)


async def test_revoked_credential_is_refused_within_the_view_lag(node_env: NodeEnv):
    username = node_env.trunk.credential.username
    async with TrunkDirectory(node_env.settings, actor="test") as trunks:
        t0 = time.monotonic()
        await trunks.revoke("pbx1")
    while (cred := node_env.node.trunks.get(username)) is None or cred.active:
        await node_env.node.trunks.sync()
    lag = time.monotonic() - t0
    print(f"revocation visible on the ingest node after {lag * 1000:.0f} ms")
    result = await run_sipp(
        "uac_auth_rtp.xml", node_env.sip, node_env.workdir,
        local_port=free_udp_port(), media_port=free_udp_port(),
        placeholders=placeholders(node_env, WAV=tone_file(node_env)[0]), timeout_s=10,
    )  # fmt: skip
    assert "SIP/2.0 403" in result.messages
    assert await call_events(node_env) == []
    reasons = [a["details"].get("reason") for a in await audit_actions(node_env)]
    assert "credential revoked" in reasons


async def test_suppressed_call_publishes_no_audio(node_env: NodeEnv):
    path, _ = tone_file(node_env, seconds=2)
    result = await run_sipp(
        "uac_auth_rtp.xml", node_env.sip, node_env.workdir,
        local_port=free_udp_port(), media_port=free_udp_port(),
        placeholders=placeholders(
            node_env, WAV=path, PAUSE_MS="2500", EXTRA_HEADERS="X-Callvault-Recording: off"
        ),
    )  # fmt: skip
    assert result.returncode == 0, result.errors
    events = await call_events(node_env)
    assert events[-1]["kind"] == "ENDED" and events[-1]["suppressed"] is True
    assert events[-1]["packets_received"] > 0  # media flowed, and was not kept
    assert await audio_of(node_env, events[-1]["call_id"]) == []


async def test_cancel_while_ringing(stack_settings, tmp_path):
    env = await start_node(node_settings(stack_settings, tmp_path, answer_delay_ms=5000), tmp_path)
    try:
        result = await run_sipp(
            "uac_cancel.xml", env.sip, env.workdir,
            local_port=free_udp_port(), media_port=free_udp_port(),
            placeholders=placeholders(env), timeout_s=20,
        )  # fmt: skip
        assert result.returncode == 0, result.errors + result.messages[-3000:]
        events = await call_events(env)
        assert [e["kind"] for e in events] == ["STARTED", "ENDED"]
        assert events[-1]["end_reason"] == "CANCELLED"
    finally:
        await env.node.stop()


async def test_options_keepalive_needs_no_auth(node_env: NodeEnv):
    result = await run_sipp(
        "options.xml", node_env.sip, node_env.workdir,
        local_port=free_udp_port(), media_port=free_udp_port(), timeout_s=10,
    )  # fmt: skip
    assert result.returncode == 0, result.errors


async def test_reinvite_to_hold_is_answered_recvonly(node_env: NodeEnv):
    result = await run_sipp(
        "uac_reinvite.xml", node_env.sip, node_env.workdir,
        local_port=free_udp_port(), media_port=free_udp_port(),
        placeholders=placeholders(node_env), timeout_s=20,
    )  # fmt: skip
    assert result.returncode == 0, result.errors + result.messages[-3000:]
    events = await call_events(node_env)
    assert [e["kind"] for e in events] == ["STARTED", "ANSWERED", "ENDED"]
    assert events[-1]["end_reason"] == "CALLER_HANGUP"


async def test_siprec_signalling_names_the_recorded_parties(node_env: NodeEnv):
    result = await run_sipp(
        "uac_siprec.xml", node_env.sip, node_env.workdir,
        local_port=free_udp_port(), media_port=free_udp_port(),
        placeholders=placeholders(node_env), timeout_s=20,
    )  # fmt: skip
    assert result.returncode == 0, result.errors + result.messages[-3000:]
    events = await call_events(node_env)
    ended = events[-1]
    assert ended["kind"] == "ENDED" and ended["codec"] == "PCMA"
    assert (ended["caller_number"], ended["callee_number"]) == ("+14155550100", "+14155550199")
    assert "m=audio" in result.messages and "a=label:97" in result.messages
