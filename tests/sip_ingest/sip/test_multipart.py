"""multipart/mixed bodies as SIPREC sends them."""

from __future__ import annotations

import pytest

from sip_ingest.sip import (
    SipParseError,
    encode_multipart,
    find_part,
    parse_message,
    parse_multipart,
)
from sip_ingest.sip.multipart import parse_content_type
from tests.sip_ingest.sip.samples import SIPREC_INVITE, SIPREC_METADATA, SIPREC_SDP


def test_siprec_body_splits_into_exact_parts() -> None:
    msg = parse_message(SIPREC_INVITE)
    parts = parse_multipart(msg.headers["content-type"], msg.body)
    assert [p.content_type for p in parts] == ["application/sdp", "application/rs-metadata+xml"]
    assert parts[0].body == SIPREC_SDP
    assert parts[1].body == SIPREC_METADATA
    assert parts[1].headers["content-disposition"] == "recording-session"
    assert find_part(parts, "APPLICATION/SDP") is parts[0]
    assert find_part(parts, "text/html") is None
    # the tuple shape (content_type, headers, body) unpacks directly
    for ctype, headers, body in parts:
        assert ctype and headers is not None and body


def test_quoted_boundary_preamble_epilogue_and_headerless_part() -> None:
    body = (
        b"This is the preamble.\r\n"
        b"--b:1 2\r\n"
        b"\r\n"
        b"implicitly text/plain\r\n"
        b"--b:1 2  \r\n"
        b"Content-Type: application/sdp; charset=utf-8\r\n"
        b"\r\n"
        b"v=0\r\n"
        b"\r\n"
        b"--b:1 2--\r\n"
        b"This is the epilogue.\r\n"
    )
    parts = parse_multipart('multipart/mixed; boundary="b:1 2"', body)
    assert [(p.content_type, p.body) for p in parts] == [
        ("text/plain", b"implicitly text/plain"),
        ("application/sdp", b"v=0\r\n"),
    ]


def test_bare_lf_bodies_are_tolerated() -> None:
    body = (
        b"--x\nContent-Type: application/sdp\n\nv=0\n\n--x\nContent-Type: text/plain\n\nhi\n--x--\n"
    )
    parts = parse_multipart("multipart/mixed;boundary=x", body)
    assert [(p.content_type, p.body) for p in parts] == [
        ("application/sdp", b"v=0\n"),
        ("text/plain", b"hi"),
    ]


def test_empty_part() -> None:
    parts = parse_multipart("multipart/mixed;boundary=x", b"--x\r\n\r\n\r\n--x--")
    assert parts[0].body == b"" and parts[0].content_type == "text/plain"


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ("application/sdp", b"--x\r\n\r\nA\r\n--x--"),
        ("multipart/mixed", b"--x\r\n\r\nA\r\n--x--"),
        ("multipart/mixed;boundary=", b"--\r\n\r\nA\r\n----"),
        ('multipart/mixed;boundary="unterminated', b"--x\r\n\r\nA\r\n--x--"),
        ("multipart/mixed;boundary=x", b"no delimiter at all"),
        ("multipart/mixed;boundary=x", b"--x\r\n\r\nA\r\n"),
        ("multipart/mixed;boundary=x", b"--xjunk\r\n\r\nA\r\n--x--"),
        ("multipart/mixed;boundary=x", b"--x--"),
        ("multipart/mixed;boundary=x", b"".join(b"--x\r\n\r\nA\r\n" for _ in range(17)) + b"--x--"),
        ("multipart/mixed;boundary=x", b"--x\r\nBad Header Line\r\n\r\nA\r\n--x--"),
        ("mixed", b""),
    ],
)
def test_malformed_multipart(ctype: str, body: bytes) -> None:
    with pytest.raises(SipParseError):
        parse_multipart(ctype, body)


def test_encode_then_parse() -> None:
    ctype, body = encode_multipart(
        [
            ("application/sdp", SIPREC_SDP),
            (
                "application/rs-metadata+xml",
                SIPREC_METADATA,
                {"Content-Disposition": "recording-session"},
            ),
        ]
    )
    assert ctype.startswith("multipart/mixed;boundary=callvault-")
    parts = parse_multipart(ctype, body)
    assert [p.body for p in parts] == [SIPREC_SDP, SIPREC_METADATA]
    assert parts[1].headers["content-disposition"] == "recording-session"
    with pytest.raises(ValueError):
        encode_multipart([("text/plain", b"--b inside")], boundary="b")


def test_parse_content_type() -> None:
    assert parse_content_type('Multipart/Mixed ; Boundary="a\\"b" ;x=1') == (
        "multipart/mixed",
        {"boundary": 'a"b', "x": "1"},
    )
    with pytest.raises(SipParseError):
        parse_content_type("nonsense")
