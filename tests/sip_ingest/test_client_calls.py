"""Our own client (``callvault call``) for what sipp cannot do: SIPREC with two recorded legs,
SRTP, TLS, and hostile input against a running node."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callvault.control.trunks import TrunkDirectory
from sip_ingest.client import CallFailed, CallOptions, place_call
from sip_ingest.media.wav import encode_g711, sine_pcm16
from tests.sip_ingest.conftest import NodeEnv, free_port, node_settings, start_node
from tests.sip_ingest.test_sipp_calls import audio_of, audit_actions, call_events

pytestmark = pytest.mark.integration


def options(env: NodeEnv, **kw: object) -> CallOptions:
    base = {
        "host": "127.0.0.1",
        "port": env.settings.ingest.sip_port,
        "username": env.trunk.credential.username,
        "password": env.trunk.password,
        "paced": False,
        "caller": "+442079460123",
        "callee": "agent-9",
    }
    base.update(kw)
    return CallOptions(**base)  # type: ignore[arg-type]


async def test_srtp_siprec_call_records_both_legs_exactly(node_env: NodeEnv):
    caller_audio = encode_g711(sine_pcm16(440, 2000), "PCMU")
    agent_audio = encode_g711(sine_pcm16(660, 2000), "PCMU")
    outcome = await place_call(
        options(node_env, siprec=True, srtp=True, audio=caller_audio, agent_audio=agent_audio)
    )
    assert outcome.status == 200
    events = await call_events(node_env)
    ended = events[-1]
    assert ended["kind"] == "ENDED"
    assert ended["caller_number"] == "+442079460123" and ended["callee_number"] == "agent-9"
    chunks = await audio_of(node_env, ended["call_id"])
    by_leg = {
        leg: b"".join(c["payload"] for c in chunks if c["leg"] == leg)
        for leg in ("CALLER", "AGENT")
    }
    assert by_leg["CALLER"] == caller_audio
    assert by_leg["AGENT"] == agent_audio
    # ENDED names how many chunks each leg published: the recorder's completeness check
    assert ended["audio_chunks"] == {
        leg: len([c for c in chunks if c["leg"] == leg]) for leg in ("CALLER", "AGENT")
    }
    # every chunk carries the call's context for the processors (expiry, per-agent policy)
    assert {(c["call_started_at"], c["agent_id"], c["suppressed"]) for c in chunks} == {
        (ended["call_started_at"], "agent-9", False)
    }


async def test_sha256_digest_over_tcp(node_env: NodeEnv):
    # 8 s sent as one burst right before the BYE: more than one read-drain's worth of packets
    # is still queued on the RTP socket when the BYE arrives, and none may be lost
    audio = encode_g711(sine_pcm16(300, 8000), "PCMA")
    outcome = await place_call(options(node_env, transport="tcp", codec="PCMA", audio=audio))
    assert outcome.status == 200
    ended = (await call_events(node_env))[-1]
    assert ended["codec"] == "PCMA"
    assert b"".join(c["payload"] for c in await audio_of(node_env, ended["call_id"])) == audio


def self_signed(tmp) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp / "node.crt", tmp / "node.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


async def test_tls_and_srtp_call_with_certificate_verification(stack_settings, tmp_path):
    cert, key = self_signed(tmp_path)
    settings = node_settings(
        stack_settings, tmp_path, tls_port=free_port(), tls_cert_file=cert, tls_key_file=key
    )
    env = await start_node(settings, tmp_path)
    try:
        audio = encode_g711(sine_pcm16(500, 1500), "PCMU")
        outcome = await place_call(
            options(env, transport="tls", port=settings.ingest.tls_port, srtp=True, audio=audio,
                    tls_ca_file=cert)
        )  # fmt: skip
        assert outcome.status == 200
        ended = (await call_events(env))[-1]
        assert b"".join(c["payload"] for c in await audio_of(env, ended["call_id"])) == audio
    finally:
        await env.node.stop()


async def test_wrong_password_fails_for_the_client_too(node_env: NodeEnv):
    with pytest.raises(CallFailed, match="403"):
        await place_call(options(node_env, password="wrong-password-123", audio=b"\xff" * 160))


SIP_LIKE = st.one_of(
    st.binary(max_size=3000),
    st.builds(
        lambda head, junk: head + junk,
        st.sampled_from(
            [
                b"INVITE sip:a@b SIP/2.0\r\n",
                b"SIP/2.0 200 OK\r\n",
                b"OPTIONS * SIP/2.0\r\nVia: ",
                b"BYE sip:x SIP/2.0\r\nContent-Length: 99999\r\n\r\n",
            ]
        ),
        st.binary(max_size=2000),
    ),
)


async def test_hostile_datagrams_never_take_the_node_down(node_env: NodeEnv):
    port = node_env.settings.ingest.sip_port
    sent: list[bytes] = []

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(SIP_LIKE)
    def collect(data: bytes) -> None:
        sent.append(data)

    collect()
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    for data in sent:
        await loop.sock_sendto(sock, data[:65000], ("127.0.0.1", port))
    huge = b"OPTIONS sip:x SIP/2.0\r\n" + b"X-Pad: " + b"a" * 60000 + b"\r\n\r\n"
    await loop.sock_sendto(sock, huge, ("127.0.0.1", port))
    # the node still answers, and still takes calls
    audio = encode_g711(sine_pcm16(440, 400), "PCMU")
    assert (await place_call(options(node_env, audio=audio))).status == 200
    sock.close()


async def test_hostile_stream_is_closed_with_400(node_env: NodeEnv):
    reader, writer = await asyncio.open_connection("127.0.0.1", node_env.settings.ingest.sip_port)
    writer.write(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: banana\r\n\r\n")
    data = await asyncio.wait_for(reader.read(1000), 5)
    assert data.startswith(b"SIP/2.0 400")
    assert await asyncio.wait_for(reader.read(1000), 5) == b""  # closed
    writer.close()


async def test_silent_call_is_ended_by_the_rtp_inactivity_timer(stack_settings, tmp_path):
    env = await start_node(node_settings(stack_settings, tmp_path, rtp_inactivity_s=1.0), tmp_path)
    try:
        audio = encode_g711(sine_pcm16(440, 200), "PCMU")
        with pytest.raises(CallFailed, match="the node ended the call"):
            # 200 ms of audio, then silence on the line: the node must hang up by itself
            await place_call(options(env, audio=audio, hold_s=10.0, timeout_s=15.0))
        ended = (await call_events(env))[-1]
        assert ended["kind"] == "ENDED" and ended["end_reason"] == "MEDIA_TIMEOUT"
        assert env.node.uas.calls == {}
    finally:
        await env.node.stop()


async def test_out_of_rtp_ports_is_answered_503_not_silence(stack_settings, tmp_path):
    from tests.ports import rtp_port_range

    low, _ = rtp_port_range(8)
    env = await start_node(
        node_settings(stack_settings, tmp_path, rtp_port_min=low, rtp_port_max=low + 2), tmp_path
    )
    hang_up, established = asyncio.Event(), asyncio.Event()

    async def hold(_legs: object) -> None:
        established.set()
        await hang_up.wait()

    try:
        first = asyncio.create_task(place_call(options(env, media=hold)))  # takes every port
        await asyncio.wait_for(established.wait(), 30)
        with pytest.raises(CallFailed, match="503"):
            await place_call(options(env, audio=b"\xff" * 160))
        hang_up.set()
        assert (await first).status == 200
        assert (await place_call(options(env, audio=b"\xff" * 160))).status == 200  # ports back
    finally:
        hang_up.set()
        await env.node.stop()


async def test_agent_with_recording_off_publishes_no_audio(node_env: NodeEnv):
    from callvault.control.workspaces import WorkspaceDirectory

    async with WorkspaceDirectory(node_env.settings) as d:
        await d.update("acme", agent_recording={"agent-9": False})
    await node_env.node.workspaces.sync()  # the node's live view has the change
    outcome = await place_call(options(node_env, audio=encode_g711(sine_pcm16(440, 600), "PCMU")))
    assert outcome.status == 200
    ended = (await call_events(node_env))[-1]
    assert ended["agent_id"] == "agent-9" and ended["recording_enabled"] is False
    assert ended["packets_received"] == 30
    assert await audio_of(node_env, ended["call_id"]) == []


async def test_call_to_an_extension_is_attributed_to_its_agent_and_its_policy(
    node_env: NodeEnv,
):
    from callvault.control.extensions import ExtensionDirectory
    from callvault.control.workspaces import WorkspaceDirectory

    async with ExtensionDirectory(node_env.settings, actor="test") as x:
        await x.add("acme", "201", agent_id="bot-7")
    async with WorkspaceDirectory(node_env.settings) as d:
        await d.update("acme", agent_recording={"bot-7": False})
    # the node's live views have both changes: no waiting on time
    await node_env.node.extensions.sync()
    await node_env.node.workspaces.sync()
    audio = encode_g711(sine_pcm16(440, 600), "PCMU")
    outcome = await place_call(options(node_env, callee="201", audio=audio))
    assert outcome.status == 200
    events = await call_events(node_env)
    assert events and {(e["agent_id"], e["recording_enabled"]) for e in events} == {
        ("bot-7", False)
    }
    ended = events[-1]
    assert ended["kind"] == "ENDED" and ended["callee_number"] == "201"  # the number stays
    assert await audio_of(node_env, ended["call_id"]) == []


async def test_repeated_auth_failures_from_one_source_are_rate_limited(stack_settings, tmp_path):
    env = await start_node(
        node_settings(stack_settings, tmp_path, auth_failures_per_minute=3), tmp_path
    )
    try:
        for _ in range(3):
            with pytest.raises(CallFailed, match="403 Forbidden"):
                await place_call(options(env, password="wrong-password-123", audio=b""))
        # the right password no longer helps from this source for the rest of the minute
        with pytest.raises(CallFailed, match="403 Too many failed attempts"):
            await place_call(options(env, audio=b""))
        assert await call_events(env) == []
    finally:
        await env.node.stop()


async def _call_up(env: NodeEnv, task: asyncio.Task) -> None:
    """Until the node holds the call (answered), or the call attempt failed."""
    while not any(a.answered for a in env.node.uas.calls.values()):
        assert not task.done(), task.exception()
        await asyncio.sleep(0.02)


async def test_revoking_a_trunk_ends_its_calls_in_progress_and_rotation_does_not(
    node_env: NodeEnv,
):
    audio = encode_g711(sine_pcm16(440, 200), "PCMU")
    call = asyncio.create_task(place_call(options(node_env, audio=audio, hold_s=30.0)))
    await _call_up(node_env, call)
    async with TrunkDirectory(node_env.settings, actor="test") as trunks:
        # a planned rotation revokes the old username but keeps the trunk: the call goes on
        rotated = await trunks.rotate("pbx1")
        await node_env.node.trunks.sync()
        assert not call.done() and len(node_env.node.uas.calls) == 1
        # revoking the trunk (a leaked password) ends the call it already has, at once
        t0 = time.monotonic()
        await trunks.revoke("pbx1")
        with pytest.raises(CallFailed, match="the node ended the call"):
            await asyncio.wait_for(call, 10)
    print(f"revocation -> BYE to the call in progress: {(time.monotonic() - t0) * 1000:.0f} ms")
    ended = [e for e in await call_events(node_env) if e["kind"] == "ENDED"]
    assert [e["end_reason"] for e in ended] == ["REJECTED"]
    actions = await audit_actions(node_env)
    [terminated] = [a for a in actions if a["action"] == "sip.call.terminated"]
    assert terminated["details"]["reason"] == "credential revoked"
    assert terminated["target"] == "trunk:pbx1" and terminated["outcome"] == "DENIED"
    # the credential's lifecycle is in the trail: issued, rotated (naming the old username),
    # revoked
    lifecycle = {a["action"]: a for a in actions if a["action"].startswith("trunk.credential.")}
    assert set(lifecycle) >= {"trunk.credential.rotate", "trunk.credential.revoke"}
    assert lifecycle["trunk.credential.rotate"]["details"]["previous"] == (
        node_env.trunk.credential.username
    )
    assert all(a["target"] == "trunk:pbx1" for a in lifecycle.values())
    # and the next attempt, with the old or the rotated password, is refused
    for user, password in ((node_env.trunk.credential.username, node_env.trunk.password),
                           (rotated.credential.username, rotated.password)):  # fmt: skip
        with pytest.raises(CallFailed, match="403"):
            await place_call(options(node_env, username=user, password=password, audio=audio))
