"""Session timers (RFC 4028) and mid-call renegotiation, end to end against a running node:
our client on one side, Kafka on the other."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sip_ingest.client import CallFailed, place_call
from sip_ingest.media.wav import encode_g711, sine_pcm16
from tests.sip_ingest.conftest import NodeEnv, node_settings, start_node
from tests.sip_ingest.test_client_calls import options
from tests.sip_ingest.test_sipp_calls import audio_of, call_events

pytestmark = pytest.mark.integration

AUDIO = encode_g711(sine_pcm16(440, 400), "PCMU")


@pytest.fixture
async def short_timer_node(stack_settings, tmp_path):
    """A node whose smallest and preferred session interval is 2 s (the RFC's floor is 90 s)."""
    env = await start_node(
        node_settings(stack_settings, tmp_path, session_min_se_s=2, session_expires_s=2),
        tmp_path,
    )
    try:
        yield env
    finally:
        await env.node.stop()


async def test_a_session_nobody_refreshes_is_ended_with_a_bye(short_timer_node: NodeEnv):
    opts = options(short_timer_node, audio=AUDIO, session_expires=2, refresher="uac", hold_s=20)
    with pytest.raises(CallFailed, match="the node ended the call"):
        await place_call(opts)  # media stopped after 0.4 s, so did refreshes: the timer fires
    ended = (await call_events(short_timer_node))[-1]
    assert ended["kind"] == "ENDED" and ended["end_reason"] == "TIMEOUT"
    assert short_timer_node.node.uas.calls == {}


async def test_uac_refreshes_keep_the_call_up(short_timer_node: NodeEnv):
    opts = options(
        short_timer_node, audio=AUDIO, session_expires=2, refresher="uac", hold_s=5,
        refresh_every_s=0.7,
    )  # fmt: skip
    assert (await place_call(opts)).status == 200  # hung up by us, after 2.5 intervals
    ended = (await call_events(short_timer_node))[-1]
    assert ended["end_reason"] == "CALLER_HANGUP"


async def test_the_node_refreshes_when_asked_to_be_the_refresher(short_timer_node: NodeEnv):
    opts = options(short_timer_node, audio=AUDIO, session_expires=2, refresher="uas", hold_s=5)
    assert (await place_call(opts)).status == 200  # the node's UPDATEs were answered by us
    ended = (await call_events(short_timer_node))[-1]
    assert ended["end_reason"] == "CALLER_HANGUP"


async def test_an_interval_below_min_se_is_answered_422_with_min_se(short_timer_node: NodeEnv):
    with pytest.raises(CallFailed, match="422") as exc:
        await place_call(options(short_timer_node, audio=AUDIO, session_expires=1))
    assert exc.value.response is not None
    assert exc.value.response.headers.get("Min-SE") == "2"
    assert await call_events(short_timer_node) == []


async def test_maximum_call_length_ends_a_call_kept_alive_forever(stack_settings, tmp_path):
    env = await start_node(node_settings(stack_settings, tmp_path, max_call_s=1.0), tmp_path)
    try:
        opts = options(env, audio=AUDIO, session_expires=90, hold_s=20, refresh_every_s=0.3)
        with pytest.raises(CallFailed, match="the node ended the call"):
            await place_call(opts)
        assert (await call_events(env))[-1]["end_reason"] == "TIMEOUT"
    finally:
        await env.node.stop()


@pytest.mark.parametrize("srtp", [False, True], ids=["rtp", "srtp"])
async def test_reinvite_with_new_media_address_and_keys_loses_no_audio(
    node_env: NodeEnv, srtp: bool
):
    caller = encode_g711(sine_pcm16(440, 2000), "PCMU")
    agent = encode_g711(sine_pcm16(660, 2000), "PCMU")
    opts = options(
        node_env, siprec=True, srtp=srtp, audio=caller, agent_audio=agent, renegotiate_at=0.5
    )
    assert (await place_call(opts)).status == 200
    ended = (await call_events(node_env))[-1]
    chunks = await audio_of(node_env, ended["call_id"])
    for leg, sent in (("CALLER", caller), ("AGENT", agent)):
        assert b"".join(c["payload"] for c in chunks if c["leg"] == leg) == sent
    assert ended["packets_lost"] == 0


async def test_reinvite_cannot_downgrade_srtp_to_rtp(node_env: NodeEnv):
    opts = options(node_env, srtp=True, audio=AUDIO, renegotiate_at=0.5, renegotiate_srtp=False)
    with pytest.raises(CallFailed, match="re-INVITE answered 488"):
        await place_call(opts)
    ended = (await call_events(node_env))[-1]
    assert ended["end_reason"] == "CALLER_HANGUP"  # the client hung up after the refusal


async def test_requests_matching_only_the_call_id_cannot_touch_the_call(node_env: NodeEnv):
    """Call-ID travels in clear: a forged BYE or re-INVITE with the wrong tags gets 481."""
    established, hang_up = asyncio.Event(), asyncio.Event()

    async def hold(_legs: object) -> None:
        established.set()
        await hang_up.wait()

    call = asyncio.create_task(place_call(options(node_env, media=hold)))
    await asyncio.wait_for(established.wait(), 30)
    [active] = node_env.node.uas.calls.values()
    d = active.dialog
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    attacker.bind(("127.0.0.1", 0))
    attacker.setblocking(False)  # the node shares this event loop: never block it
    loop = asyncio.get_running_loop()
    try:
        port = attacker.getsockname()[1]
        for method in ("BYE", "INVITE"):
            forged = (
                f"{method} sip:callvault@127.0.0.1 SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKforged{method}\r\n"
                f"From: <sip:x@evil>;tag=not-the-callers-tag\r\n"
                f"To: <sip:agent@127.0.0.1>;tag={d.local_tag}\r\n"
                f"Call-ID: {d.sip_call_id}\r\nCSeq: 99 {method}\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            attacker.sendto(forged, node_env.sip)
            reply = await asyncio.wait_for(loop.sock_recv(attacker, 4096), 5)
            assert reply.startswith(b"SIP/2.0 481"), reply[:40]
        assert d.sip_call_id in node_env.node.uas.calls  # still up
    finally:
        attacker.close()
        hang_up.set()
    assert (await call).status == 200
