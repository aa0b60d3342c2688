"""The RTP sender's wire format: sequence continuity and RFC 4733 event packets."""

from __future__ import annotations

import struct

import pytest

from sip_ingest.media.rtp import RtpPacket, parse_rtp
from sip_ingest.media.sender import DtmfPress, RtpSender


def parsed(sender: RtpSender, g711: bytes, dtmf: list[DtmfPress]) -> list[RtpPacket]:
    out = []
    for _, raw, _ in sender.packets(g711, dtmf):
        pkt = parse_rtp(raw)
        assert not isinstance(pkt, str)
        out.append(pkt)
    return out


def test_a_press_is_start_continuations_and_three_ends() -> None:
    sender = RtpSender(("127.0.0.1", 9), ssrc=1, start_seq=65534, start_ts=1000)
    try:
        pkts = parsed(sender, b"\xff" * 1600, [DtmfPress(40, "9", duration_ms=60)])
    finally:
        sender.close()
    events = [p for p in pkts if p.payload_type == 101]
    audio = [p for p in pkts if p.payload_type == 0]
    assert len(audio) == 10
    assert [p.seq for p in pkts] == [(65534 + i) & 0xFFFF for i in range(len(pkts))]
    fields = [struct.unpack("!BBH", p.payload) for p in events]
    assert [f[0] for f in fields] == [9] * 6
    assert [bool(f[1] & 0x80) for f in fields] == [False] * 3 + [True] * 3
    assert [f[2] for f in fields] == [160, 320, 480, 480, 480, 480]
    assert [p.marker for p in events] == [True] + [False] * 5
    assert {p.timestamp for p in events} == {1000 + 2 * 160}  # the audio clock at 40 ms
    assert sender.next_seq == (65534 + len(pkts)) & 0xFFFF
    assert sender.next_timestamp == 1000 + 10 * 160


def test_state_continues_between_sends() -> None:
    sender = RtpSender(("127.0.0.1", 9), ssrc=1, start_seq=10, start_ts=0)
    try:
        first = parsed(sender, b"\x00" * 320, [])
        second = parsed(sender, b"\x00" * 320, [])
    finally:
        sender.close()
    assert [p.seq for p in first + second] == [10, 11, 12, 13]
    assert [p.timestamp for p in first + second] == [0, 160, 320, 480]


def test_bad_press() -> None:
    with pytest.raises(ValueError):
        DtmfPress(0, "x")
    with pytest.raises(ValueError):
        DtmfPress(0, "1", duration_ms=0)
