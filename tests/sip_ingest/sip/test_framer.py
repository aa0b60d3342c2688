"""TCP/TLS framing by Content-Length, keepalives and garbage handling."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from sip_ingest.sip import PING, SipParseError, SipRequest, StreamFramer
from sip_ingest.sip.message import MAX_HEADER_BYTES
from tests.sip_ingest.sip.samples import (
    ASTERISK_INVITE,
    OPTIONS_PING,
    SIPREC_INVITE,
    crlf,
    with_body,
)


def _methods(items: Sequence[object]) -> list[object]:
    return [i.method if isinstance(i, SipRequest) else i for i in items]


def test_two_messages_in_one_read() -> None:
    framer = StreamFramer()
    out = framer.feed(ASTERISK_INVITE + SIPREC_INVITE)
    assert _methods(out) == ["INVITE", "INVITE"]
    assert isinstance(out[1], SipRequest) and out[1].body.startswith(b"--uniqueBoundary")
    assert framer.buffered == 0


def test_byte_by_byte_delivery() -> None:
    framer = StreamFramer()
    out: list[object] = []
    for i in range(len(SIPREC_INVITE)):
        out += framer.feed(SIPREC_INVITE[i : i + 1])
    assert len(out) == 1 and isinstance(out[0], SipRequest)
    again = framer.feed(SIPREC_INVITE)[0]
    assert isinstance(again, SipRequest) and bytes(out[0]) == bytes(again)


def test_keepalive_pings_between_messages() -> None:
    framer = StreamFramer()
    out = framer.feed(b"\r\n\r\n" + OPTIONS_PING + b"\r\n\r\n\r\n\r\n")
    assert _methods(out) == [PING, "OPTIONS", PING, PING]
    # a ping split across reads, and a lone CRLF (a pong) that is not reported
    assert framer.feed(b"\r\n") == []
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n") == [PING]
    assert framer.feed(b"\r\n") == []
    assert _methods(framer.feed(OPTIONS_PING)) == ["OPTIONS"]


def test_missing_content_length_is_fatal_on_streams() -> None:
    data = crlf(
        "OPTIONS sip:x@198.51.100.7 SIP/2.0\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\n"
        "From: <sip:a@h>;tag=1\nTo: <sip:x@198.51.100.7>\nCall-ID: c\nCSeq: 1 OPTIONS\n\n"
    )
    with pytest.raises(SipParseError, match="Content-Length is mandatory"):
        StreamFramer().feed(data)


def test_garbage_is_fatal_early() -> None:
    with pytest.raises(SipParseError, match="garbage"):
        StreamFramer().feed(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 80)
    with pytest.raises(SipParseError, match="garbage"):
        StreamFramer().feed(b"GET / HTTP/1.1\r\n")  # looks like a start line, but HTTP
    # ...which is only known at the blank line for a start line that merely looks right
    framer = StreamFramer()
    with pytest.raises(SipParseError):
        framer.feed(b"HELLO world\r\n\r\n")


def test_header_section_limit() -> None:
    framer = StreamFramer()
    framer.feed(b"OPTIONS sip:x SIP/2.0\r\nX-Big: ")
    with pytest.raises(SipParseError, match="too large"):
        framer.feed(b"a" * (MAX_HEADER_BYTES + 1))


def test_body_limit() -> None:
    head = (
        "MESSAGE sip:x@198.51.100.7 SIP/2.0\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\n"
        "From: <sip:a@h>;tag=1\nTo: <sip:x@198.51.100.7>\nCall-ID: c\nCSeq: 1 MESSAGE\n"
    )
    big = with_body(head, b"x" * (400 * 1024))
    out = StreamFramer().feed(big)
    assert isinstance(out[0], SipRequest) and len(out[0].body) == 400 * 1024
    with pytest.raises(SipParseError) as info:
        StreamFramer().feed(crlf(head + "Content-Length: 600000\n\n"))
    assert info.value.status == 413


def test_well_framed_but_invalid_message_is_reported_and_the_stream_continues() -> None:
    bad = OPTIONS_PING.replace(b"CSeq: 42 OPTIONS", b"CSeq: 42 INVITE")
    out = StreamFramer().feed(bad + OPTIONS_PING)
    assert isinstance(out[0], SipParseError) and isinstance(out[0].partial, SipRequest)
    assert isinstance(out[1], SipRequest) and out[1].method == "OPTIONS"


def test_content_length_spanning_reads() -> None:
    framer = StreamFramer()
    cut = ASTERISK_INVITE.index(b"\r\n\r\n") + 10
    assert framer.feed(ASTERISK_INVITE[:cut]) == []
    assert framer.buffered == cut
    out = framer.feed(ASTERISK_INVITE[cut:] + OPTIONS_PING[:5])
    assert _methods(out) == ["INVITE"]
    assert _methods(framer.feed(OPTIONS_PING[5:])) == ["OPTIONS"]
