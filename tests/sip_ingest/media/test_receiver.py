"""The receive path over real loopback UDP sockets: exact bytes, SRTP, latching, hostile input.

Every test runs on the stock asyncio loop; the round trip also runs on uvloop when installed.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sip_ingest.media.leg import Codec, LegState
from sip_ingest.media.ports import RtpPortAllocator
from sip_ingest.media.receiver import DEFAULT_DRAIN, DrainMode, RtpReceiver
from sip_ingest.media.rtp import build_rtp
from sip_ingest.media.sender import DtmfPress, RtpSender
from sip_ingest.media.srtp import SrtpReceiver, SrtpSender, new_master_key
from sip_ingest.media.wav import WavEncoding, encode_g711, sine_pcm16, wav_to_g711, write_wav

from .conftest import Chunks

LOCAL = "127.0.0.1"


def new_leg(**kwargs: Any) -> tuple[LegState, Chunks]:
    chunks = Chunks()
    leg = LegState("call-r", "ws-r", kwargs.pop("leg", "CALLER"), on_chunk=chunks, **kwargs)
    return leg, chunks


async def wait_for(cond: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def make_wav(tmp_path: Path, seconds: float, *, encoding: WavEncoding = "pcm16") -> Path:
    pcm = sine_pcm16(440, int(seconds * 1000))
    path = tmp_path / f"tone-{encoding}.wav"
    if encoding == "pcm16":
        write_wav(path, pcm)
    else:
        law: Codec = "PCMU" if encoding == "pcmu" else "PCMA"
        write_wav(path, encode_g711(pcm, law), encoding=encoding)
    return path


async def round_trip(
    g711: bytes, *, codec: str, paced: bool, drain: DrainMode = DEFAULT_DRAIN
) -> tuple[Chunks, LegState]:
    leg, chunks = new_leg()
    rx = RtpReceiver.open(leg, LOCAL, 0, drain=drain)
    rx.start()
    sender = RtpSender(rx.local_address, codec=codec, start_seq=65500)  # type: ignore[arg-type]
    try:
        report = await sender.send(g711, paced=paced)
        await wait_for(lambda: leg.packets_received == report.audio_packets)
        leg.flush()
    finally:
        sender.close()
        rx.close()
    return chunks, leg


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
@pytest.mark.parametrize("paced", [False, True], ids=["unpaced", "paced"])
async def test_wav_streamed_over_loopback_arrives_byte_exact(
    tmp_path: Path, codec: str, paced: bool
) -> None:
    g711 = wav_to_g711(make_wav(tmp_path, 2.5 if paced else 6.0), codec)  # type: ignore[arg-type]
    started = time.monotonic()
    chunks, leg = await round_trip(g711, codec=codec, paced=paced)
    elapsed = time.monotonic() - started
    assert chunks.payload == g711
    assert [c["seq"] for c in chunks] == list(range(len(chunks)))
    assert all(c["codec"] == codec and c["missing_packets"] == 0 for c in chunks)
    assert all(len(c["payload"]) == 8000 for c in chunks[:-1])
    stats = leg.stats()
    assert stats.packets_lost == 0 and stats.duplicates == 0 and stats.drops == {}
    if paced:
        assert elapsed >= 2.4  # real time: 125 packets at 20 ms
        assert stats.jitter_ms < 20
    # the sequence wrapped during the stream (started at 65500)
    assert chunks[0]["first_rtp_seq"] == 65500


async def test_g711_wav_is_sent_unchanged(tmp_path: Path) -> None:
    path = make_wav(tmp_path, 1.0, encoding="pcmu")
    raw = wav_to_g711(path, "PCMU")
    chunks, _ = await round_trip(raw, codec="PCMU", paced=False)
    assert chunks.payload == raw


@pytest.mark.parametrize("drain", ["once", "peek", "eagain"])
async def test_every_drain_mode_delivers_a_burst_exactly(tmp_path: Path, drain: DrainMode) -> None:
    g711 = wav_to_g711(make_wav(tmp_path, 4.0), "PCMA")
    chunks, leg = await round_trip(g711, codec="PCMA", paced=False, drain=drain)
    assert chunks.payload == g711
    assert leg.stats().packets_lost == 0


def test_unknown_drain_mode() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with pytest.raises(ValueError):
            RtpReceiver(new_leg()[0], sock, drain="all")  # type: ignore[arg-type]
    finally:
        sock.close()


def test_round_trip_on_uvloop(tmp_path: Path) -> None:
    uvloop = pytest.importorskip("uvloop")
    g711 = wav_to_g711(make_wav(tmp_path, 3.0), "PCMU")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        chunks, leg = runner.run(round_trip(g711, codec="PCMU", paced=False))
    assert chunks.payload == g711
    assert leg.stats().packets_lost == 0


async def test_dtmf_through_the_socket_counts_presses_and_keeps_audio_exact(
    tmp_path: Path,
) -> None:
    g711 = wav_to_g711(make_wav(tmp_path, 2.0), "PCMU")
    leg, chunks = new_leg(dtmf_payload_type=101)
    rx = RtpReceiver.open(leg, LOCAL, 0)
    rx.start()
    sender = RtpSender(rx.local_address, dtmf_payload_type=101)
    presses = [DtmfPress(200, "4"), DtmfPress(600, "4"), DtmfPress(1200, "#", duration_ms=250)]
    try:
        report = await sender.send(g711, paced=False, dtmf=presses)
        total = report.audio_packets + report.dtmf_packets
        await wait_for(lambda: leg.packets_received == total)
        leg.flush()
    finally:
        sender.close()
        rx.close()
    stats = leg.stats()
    assert stats.dtmf_events == 3
    assert chunks.payload == g711
    assert stats.packets_lost == 0
    assert stats.drops == {}


async def test_srtp_round_trip_and_tampered_packet_is_a_counted_drop(tmp_path: Path) -> None:
    key = new_master_key()
    g711 = wav_to_g711(make_wav(tmp_path, 2.0), "PCMU")
    leg, chunks = new_leg()
    rx = RtpReceiver.open(leg, LOCAL, 0, srtp=SrtpReceiver(key))
    rx.start()
    protect = SrtpSender(key)
    sender = RtpSender(rx.local_address, srtp=protect)
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        first = await sender.send(g711[:8000], paced=False)
        await wait_for(lambda: leg.packets_received == first.audio_packets)
        # a tampered packet carrying the next sequence number, from the sender's own address
        forger = SrtpSender(key)  # own session: the real sender must not see this seq as used
        plain = build_rtp(0, sender.next_seq, 0, sender.ssrc, b"x" * 160)
        tampered = bytearray(forger.protect(plain))
        tampered[20] ^= 0x01
        sender._sock.sendto(bytes(tampered), rx.local_address)
        # a plain RTP packet (no auth tag) and garbage
        attacker.sendto(build_rtp(0, 1, 1, 1, b"\xff" * 160), rx.local_address)
        attacker.sendto(b"\x00" * 40, rx.local_address)
        await wait_for(lambda: sum(leg.stats().drops.values()) == 3)
        # the stream continues unharmed after the forgery (the replay window was not advanced)
        rest = await sender.send(g711[8000:], paced=False)
        await wait_for(lambda: leg.packets_received == first.audio_packets + rest.audio_packets)
        leg.flush()
    finally:
        attacker.close()
        sender.close()
        rx.close()
    assert chunks.payload == g711
    assert leg.stats().drops == {"srtp_auth": 3}
    assert leg.stats().packets_lost == 0


async def test_srtp_replayed_packet_is_dropped() -> None:
    key = new_master_key()
    leg, chunks = new_leg()
    rx = RtpReceiver.open(leg, LOCAL, 0, srtp=SrtpReceiver(key))
    rx.start()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    protect = SrtpSender(key)
    try:
        packets = [protect.protect(build_rtp(0, i, 160 * i, 7, bytes([i]) * 160)) for i in range(5)]
        for p in [*packets, packets[2]]:
            tx.sendto(p, rx.local_address)
        await wait_for(lambda: leg.packets_received == 5 and leg.stats().drops != {})
        leg.flush()
    finally:
        tx.close()
        rx.close()
    assert leg.stats().drops == {"srtp_replay": 1}
    assert chunks.payload == b"".join(bytes([i]) * 160 for i in range(5))


async def test_rekey_accepts_in_flight_packets_under_the_old_key() -> None:
    old, new = new_master_key(), new_master_key()
    leg, chunks = new_leg()
    rx = RtpReceiver.open(leg, LOCAL, 0, srtp=SrtpReceiver(old))
    rx.start()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    p_old, p_new = SrtpSender(old), SrtpSender(new)

    def pkt(i: int, s: SrtpSender) -> bytes:
        return s.protect(build_rtp(0, i, 160 * i, 9, bytes([i]) * 160))

    try:
        tx.sendto(pkt(0, p_old), rx.local_address)
        await wait_for(lambda: leg.packets_received == 1)
        rx.set_srtp(SrtpReceiver(new))  # re-INVITE answered; the peer switches a bit later
        tx.sendto(pkt(1, p_old), rx.local_address)  # still in flight under the old key
        tx.sendto(pkt(2, p_new), rx.local_address)
        tx.sendto(pkt(3, p_old), rx.local_address)  # after the switch: no longer accepted
        tx.sendto(pkt(4, p_new), rx.local_address)
        await wait_for(lambda: leg.packets_received == 4 and leg.stats().drops != {})
        leg.flush()
    finally:
        tx.close()
        rx.close()
    assert leg.stats().drops == {"srtp_auth": 1}
    assert chunks.payload == b"".join(bytes([i]) * 160 for i in (0, 1, 2, 4))


async def test_latching_drops_other_sources_but_follows_the_negotiated_one() -> None:
    leg, chunks = new_leg()
    a, b, sdp_peer = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3))
    for s in (a, b, sdp_peer):
        s.bind((LOCAL, 0))
    rx = RtpReceiver.open(leg, LOCAL, 0, remote=sdp_peer.getsockname())
    rx.start()
    dest = rx.local_address

    def pkt(i: int) -> bytes:
        return build_rtp(0, i, 160 * i, 5, bytes([i]) * 160)

    try:
        a.sendto(pkt(0), dest)  # NAT'd peer: not the SDP address, latched as the first source
        await wait_for(lambda: leg.packets_received == 1)
        assert rx.source == a.getsockname()
        b.sendto(pkt(1), dest)  # injection from elsewhere
        await wait_for(lambda: leg.stats().drops == {"foreign_source": 1})
        sdp_peer.sendto(pkt(1), dest)  # the negotiated address always wins
        await wait_for(lambda: leg.packets_received == 2)
        assert rx.source == sdp_peer.getsockname()
        assert rx.relatches == 1
        a.sendto(pkt(2), dest)  # the old latch is now foreign
        sdp_peer.sendto(pkt(2), dest)
        await wait_for(lambda: leg.packets_received == 3)
        leg.flush()
    finally:
        for s in (a, b, sdp_peer):
            s.close()
        rx.close()
    assert leg.stats().drops == {"foreign_source": 2}
    assert chunks.payload == b"".join(bytes([i]) * 160 for i in range(3))


async def test_strict_mode_accepts_only_the_negotiated_address() -> None:
    leg, _ = new_leg()
    peer, other = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    for s in (peer, other):
        s.bind((LOCAL, 0))
    rx = RtpReceiver.open(leg, LOCAL, 0, remote=peer.getsockname(), latch=False)
    rx.start()
    try:
        other.sendto(build_rtp(0, 0, 0, 1, b"\xff" * 160), rx.local_address)
        peer.sendto(build_rtp(0, 1, 160, 1, b"\xff" * 160), rx.local_address)
        await wait_for(lambda: leg.packets_received == 1 and leg.stats().drops != {})
    finally:
        peer.close()
        other.close()
        rx.close()
    assert leg.stats().drops == {"foreign_source": 1}


async def test_srtp_authenticated_packets_relatch_after_a_nat_rebinding() -> None:
    key = new_master_key()
    leg, chunks = new_leg()
    rx = RtpReceiver.open(leg, LOCAL, 0, srtp=SrtpReceiver(key))
    rx.start()
    protect = SrtpSender(key)
    before, after = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    try:
        before.sendto(protect.protect(build_rtp(0, 0, 0, 3, b"\x01" * 160)), rx.local_address)
        await wait_for(lambda: leg.packets_received == 1)
        after.sendto(protect.protect(build_rtp(0, 1, 160, 3, b"\x02" * 160)), rx.local_address)
        await wait_for(lambda: leg.packets_received == 2)
        leg.flush()
    finally:
        before.close()
        after.close()
        rx.close()
    assert rx.relatches == 1
    assert chunks.payload == b"\x01" * 160 + b"\x02" * 160


async def test_hostile_datagrams_are_counted_and_the_reader_survives() -> None:
    leg, chunks = new_leg()
    rx = RtpReceiver.open(leg, LOCAL, 0)
    rx.start()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for junk in (
            b"",
            b"\x80",
            b"\x00" * 12,
            b"\x80\xc8" + b"\x00" * 26,  # RTCP sender report on the RTP port
            b"\xb0" + b"\x00" * 13,  # extension header cut short
            build_rtp(0, 0, 0, 1, b"\xff" * 4000),  # larger than the 2 KiB buffer
        ):
            tx.sendto(junk, rx.local_address)
        tx.sendto(build_rtp(0, 0, 0, 1, b"\x55" * 160), rx.local_address)
        await wait_for(lambda: leg.packets_received == 1)
        leg.flush()
    finally:
        tx.close()
        rx.close()
    assert leg.stats().drops == {
        "rtp_short": 2,  # the empty datagram (a 0-byte read) and the 1-byte one
        "rtp_version": 1,
        "rtcp_mux": 1,
        "rtp_extension_overflow": 1,
        "oversize": 1,
    }
    assert chunks.payload == b"\x55" * 160


async def test_a_failing_chunk_callback_costs_a_packet_not_the_reader() -> None:
    calls = 0

    def explode(record: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("publisher bug")

    leg = LegState("c", "w", "CALLER", on_chunk=explode, chunk_ms=20)
    rx = RtpReceiver.open(leg, LOCAL, 0)
    rx.start()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in range(10):
            tx.sendto(build_rtp(0, i, 160 * i, 1, b"\xff" * 160), rx.local_address)
        await wait_for(lambda: leg.packets_received == 10)
    finally:
        tx.close()
        rx.close()
    assert leg.stats().drops.get("internal_error", 0) >= 1
    assert calls >= 1


async def test_close_releases_the_port_and_is_idempotent() -> None:
    alloc = RtpPortAllocator(41000, 41999)
    leg, _ = new_leg()
    rx = RtpReceiver.open(leg, LOCAL, allocator=alloc)
    rx.start()
    port = rx.port
    assert port % 2 == 0 and alloc.in_use == 1
    assert rx.rcvbuf >= 1 << 20
    rx.close()
    rx.close()
    assert alloc.in_use == 0 and rx.closed
    with pytest.raises(RuntimeError):
        rx.start()
