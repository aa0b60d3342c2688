"""RTP header parsing: every header feature, and garbage never raises."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from sip_ingest.media.rtp import RtpPacket, build_rtp, parse_rtp


def header(
    *,
    pt: int = 0,
    seq: int = 1,
    ts: int = 160,
    ssrc: int = 0xDEADBEEF,
    marker: bool = False,
    padding: bool = False,
    extension: bool = False,
    cc: int = 0,
    version: int = 2,
) -> bytes:
    b0 = (version << 6) | (padding << 5) | (extension << 4) | cc
    return struct.pack("!BBHII", b0, (marker << 7) | pt, seq, ts, ssrc)


def test_plain_packet() -> None:
    pkt = parse_rtp(header(pt=8, seq=65535, ts=0xFFFFFFFF, marker=True) + b"abc")
    assert pkt == RtpPacket(8, True, 65535, 0xFFFFFFFF, 0xDEADBEEF, b"abc", 0)


def test_build_round_trips_and_wraps() -> None:
    raw = build_rtp(0, 65536 + 7, 2**32 + 5, 42, b"\x01\x02", marker=True)
    pkt = parse_rtp(raw)
    assert isinstance(pkt, RtpPacket)
    assert (pkt.seq, pkt.timestamp, pkt.ssrc, pkt.marker, pkt.payload) == (7, 5, 42, True, b"\1\2")


def test_csrc_list_is_skipped() -> None:
    csrcs = struct.pack("!III", 1, 2, 3)
    pkt = parse_rtp(header(cc=3) + csrcs + b"payload")
    assert isinstance(pkt, RtpPacket)
    assert pkt.csrc_count == 3
    assert pkt.payload == b"payload"


def test_extension_is_skipped() -> None:
    ext = struct.pack("!HH", 0xBEDE, 2) + b"\xaa" * 8
    pkt = parse_rtp(header(extension=True) + ext + b"payload")
    assert isinstance(pkt, RtpPacket)
    assert pkt.payload == b"payload"


def test_padding_is_stripped_with_csrc_and_extension() -> None:
    body = struct.pack("!I", 9) + struct.pack("!HH", 0x1000, 1) + b"\0\0\0\0" + b"audio"
    pkt = parse_rtp(header(cc=1, extension=True, padding=True) + body + b"\0\0\x03")
    assert isinstance(pkt, RtpPacket)
    assert pkt.payload == b"audio"


def test_parse_from_a_larger_buffer_with_length() -> None:
    buf = bytearray(2048)
    raw = header(seq=9) + b"xyz"
    buf[: len(raw)] = raw
    pkt = parse_rtp(memoryview(buf), len(raw))
    assert isinstance(pkt, RtpPacket)
    assert pkt.payload == b"xyz"
    assert type(pkt.payload) is bytes  # an owned copy, not a view of the reused buffer


def test_malformed_packets_give_reasons() -> None:
    assert parse_rtp(b"") == "rtp_short"
    assert parse_rtp(header()[:11]) == "rtp_short"
    assert parse_rtp(header(version=1) + b"x") == "rtp_version"
    assert parse_rtp(header(cc=15) + b"\0" * 8) == "rtp_csrc_overflow"
    assert parse_rtp(header(extension=True) + b"\xbe\xde") == "rtp_extension_overflow"
    assert parse_rtp(header(extension=True) + struct.pack("!HH", 0, 100)) == (
        "rtp_extension_overflow"
    )
    assert parse_rtp(header(padding=True) + b"ab\x00") == "rtp_padding"
    assert parse_rtp(header(padding=True) + b"ab\x09") == "rtp_padding"
    assert parse_rtp(header(padding=True)) == "rtp_padding"
    # RTCP multiplexed onto the RTP port (RFC 5761): SR = 200 -> marker + PT 72
    assert parse_rtp(struct.pack("!BBHII", 0x80, 200, 6, 1, 2)) == "rtcp_mux"


def test_empty_payload_is_a_packet() -> None:
    pkt = parse_rtp(header())
    assert isinstance(pkt, RtpPacket)
    assert pkt.payload == b""


@given(st.binary(max_size=300))
def test_garbage_never_raises(data: bytes) -> None:
    result = parse_rtp(data)
    assert isinstance(result, RtpPacket | str)


@given(
    st.integers(0, 15),
    st.booleans(),
    st.booleans(),
    st.binary(max_size=64),
    st.binary(max_size=200),
)
def test_fuzzed_headers_never_raise(cc: int, p: bool, x: bool, tail: bytes, body: bytes) -> None:
    data = header(cc=cc, padding=p, extension=x) + tail + body
    result = parse_rtp(data)
    if isinstance(result, RtpPacket):
        assert len(result.payload) <= len(data) - 12
