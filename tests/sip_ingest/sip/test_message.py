"""SIP message parsing, headers, addresses, serialization, responses and rport."""

from __future__ import annotations

import pytest

from sip_ingest.sip import (
    AbsoluteUri,
    Headers,
    SipError,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    UnsupportedExtension,
    Via,
    apply_rport,
    is_keepalive,
    make_response,
    parse_cseq,
    parse_message,
    parse_name_addr,
    parse_via,
    require_supported,
)
from sip_ingest.sip.message import MAX_HEADER_BYTES, split_header_list
from tests.sip_ingest.sip.samples import (
    ASTERISK_INVITE,
    ASTERISK_SDP,
    FREESWITCH_INVITE,
    SIPP_INVITE,
    SIPP_SDP,
    SIPREC_BODY,
    SIPREC_INVITE,
    crlf,
    with_body,
)

MINIMAL = """OPTIONS sip:198.51.100.7 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKmin
From: <sip:a@192.0.2.1>;tag=1
To: <sip:b@198.51.100.7>
Call-ID: minimal-1
CSeq: 1 OPTIONS
"""


def minimal(extra: str = "", body: bytes = b"") -> bytes:
    return with_body(MINIMAL + extra, body)


# --- realistic messages ------------------------------------------------------------------------


def test_asterisk_invite_parses_into_what_the_call_layer_needs() -> None:
    msg = parse_message(ASTERISK_INVITE)
    assert isinstance(msg, SipRequest)
    assert msg.method == "INVITE"
    assert msg.uri == "sip:+4930555000@198.51.100.7:5060"
    ruri = msg.request_uri
    assert isinstance(ruri, SipUri)
    assert (ruri.user, ruri.host, ruri.port) == ("+4930555000", "198.51.100.7", 5060)
    via = msg.via
    assert (via.transport, via.host, via.port) == ("UDP", "192.0.2.10", 5060)
    assert via.branch == "z9hG4bKPj0b3f5c8e-5b2f-4c31-9d0e-6f1a2b3c4d5e"
    assert via.has_rport and via.rport is None
    assert msg.from_.display == "Alice Example"
    assert msg.from_.user == "+14155550100"
    assert msg.from_.tag == "4f2c9a7e-1b6d-4e0f-8a3c-5d7e9f1a2b3c"
    assert msg.to.tag is None and msg.to.user == "+4930555000"
    assert msg.cseq == (3847, "INVITE")
    assert msg.call_id == "8c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f"
    assert msg.content_type == "application/sdp"
    assert msg.body == ASTERISK_SDP
    assert msg.headers.get_list("Supported") == [
        "100rel",
        "timer",
        "replaces",
        "norefersub",
        "histinfo",
    ]
    assert msg.headers.get_int("session-expires") == 1800
    assert msg.headers.get_int("Max-Forwards") == 70
    assert "ACK" in msg.headers.get_list("allow")


def test_freeswitch_tls_invite() -> None:
    msg = parse_message(FREESWITCH_INVITE)
    assert isinstance(msg, SipRequest)
    assert msg.via.transport == "TLS"
    assert msg.request_uri.params == {"transport": "tls"}
    rpid = parse_name_addr(msg.headers["Remote-Party-ID"])
    assert rpid.params == {"party": "calling", "screen": "yes", "privacy": "off"}
    assert msg.headers.get("x-fs-support") == "update_display,send_info"


def test_sipp_uac_invite_with_padded_content_length_and_bare_contact() -> None:
    msg = parse_message(SIPP_INVITE)
    assert msg.body == SIPP_SDP
    assert msg.headers.get_int("Content-Length") == len(SIPP_SDP)
    contact = parse_name_addr(msg.headers["Contact"])
    assert contact.display is None and str(contact.uri) == "sip:sipp@127.0.0.1:5061"
    assert msg.to.display == "service"
    assert msg.headers["Subject"] == "Performance Test"


def test_siprec_invite_keeps_multipart_body_exact() -> None:
    msg = parse_message(SIPREC_INVITE)
    assert msg.body == SIPREC_BODY
    assert msg.headers.get_list("Require") == ["siprec"]
    contact = parse_name_addr(msg.headers["Contact"])
    assert contact.params == {"+sip.src": None}


def test_roundtrip_is_stable() -> None:
    for data in (ASTERISK_INVITE, FREESWITCH_INVITE, SIPP_INVITE, SIPREC_INVITE):
        msg = parse_message(data)
        again = parse_message(bytes(msg))
        assert again.headers == msg.headers
        assert again.body == msg.body
        assert bytes(again) == bytes(msg)


def test_leading_crlfs_are_ignored() -> None:
    msg = parse_message(b"\r\n\r\n" + minimal())
    assert isinstance(msg, SipRequest) and msg.method == "OPTIONS"


def test_is_keepalive() -> None:
    assert is_keepalive(b"\r\n\r\n") and is_keepalive(b"\r\n")
    assert not is_keepalive(b"") and not is_keepalive(minimal())


# --- headers -----------------------------------------------------------------------------------


def test_compact_forms_expand() -> None:
    data = crlf(
        """INVITE sip:b@198.51.100.7 SIP/2.0
v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKc
f: <sip:a@192.0.2.1>;tag=1
t: <sip:b@198.51.100.7>
i: compact-1
CSeq: 1 INVITE
m: <sip:a@192.0.2.1>
k: timer
s: hello
o: refer
r: <sip:c@192.0.2.9>
x: 1800
u: talk
e: gzip
c: text/plain
l: 2

hi"""
    )
    msg = parse_message(data)
    h = msg.headers
    assert h["Call-ID"] == "compact-1"
    assert h["Contact"] == "<sip:a@192.0.2.1>"
    assert h["Supported"] == "timer"
    assert h["Subject"] == "hello"
    assert h["Event"] == "refer"
    assert h["Refer-To"] == "<sip:c@192.0.2.9>"
    assert h["Session-Expires"] == "1800"
    assert h["Allow-Events"] == "talk"
    assert h["Content-Encoding"] == "gzip"
    assert msg.content_type == "text/plain"
    assert msg.body == b"hi"
    wire = bytes(msg)
    assert b"\r\nCall-ID: compact-1\r\n" in wire
    assert b"\r\nFrom: <sip:a@192.0.2.1>;tag=1\r\n" in wire
    assert wire.endswith(b"Content-Length: 2\r\n\r\nhi")


def test_header_names_are_case_insensitive_and_canonical_on_output() -> None:
    msg = parse_message(minimal("cAlL-iNfO: <http://x.example/a>\nX-Custom-Thing: 1\n"))
    assert msg.headers.get("call-info") == "<http://x.example/a>"
    assert msg.headers.get("CALL-INFO") == "<http://x.example/a>"
    wire = bytes(msg)
    assert b"\r\nCall-Info: " in wire
    assert b"\r\nX-Custom-Thing: 1\r\n" in wire


def test_via_list_is_split_respecting_quotes() -> None:
    data = minimal().replace(
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKmin",
        b'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKmin;x="a,b" ,SIP/2.0/TCP p.example:5070'
        b";branch=z9hG4bK2\r\nVia: SIP/2.0/TLS q.example;branch=z9hG4bK3",
    )
    msg = parse_message(data)
    assert isinstance(msg, SipRequest)
    vias = msg.vias
    assert [v.host for v in vias] == ["192.0.2.1", "p.example", "q.example"]
    assert vias[0].params["x"] == '"a,b"'
    response = make_response(msg, 200)
    assert response.headers.get_all("via") == msg.headers.get_all("via")


def test_line_folding_is_unfolded() -> None:
    msg = parse_message(minimal("Subject: first part\n  second part\nX-Fold:\n\tvalue\n"))
    assert msg.headers["subject"] == "first part second part"
    assert msg.headers["x-fold"] == "value"


def test_headers_multidict_operations() -> None:
    h = Headers([("Via", "a"), ("v", "b"), ("To", "t")])
    assert h.get_all("VIA") == ["a", "b"]
    h.prepend("Via", "top")
    assert h.get("via") == "top"
    h.set("via", "only")
    assert h.get_all("via") == ["only"] and next(iter(h)) == ("Via", "only")
    h.add("X-A", "1")
    assert h.remove("x-a") == 1 and "X-A" not in h
    h.replace_first("To", "t2")
    assert h["to"] == "t2"
    with pytest.raises(KeyError):
        h["nope"]
    with pytest.raises(ValueError):
        h.add("X-Evil", "a\r\nVia: injected")
    with pytest.raises(ValueError):
        h.set("Subject", "a\nb")
    with pytest.raises(SipParseError):
        h.add("Bad Name", "x")


def test_get_int_rejects_garbage() -> None:
    h = Headers({"Expires": "-5", "Max-Forwards": "0070", "Big": "12345678901", "U": "٣"})
    assert h.get_int("max-forwards") == 70
    assert h.get_int("missing", 7) == 7
    for name in ("Expires", "Big", "U"):
        with pytest.raises(SipParseError):
            h.get_int(name)


def test_split_header_list() -> None:
    assert split_header_list('"a, b" <sip:x@y>, <sip:z@w;p=1,2>') == [
        '"a, b" <sip:x@y>',
        "<sip:z@w;p=1,2>",
    ]
    assert split_header_list("a,,b") == ["a", "", "b"]
    with pytest.raises(SipParseError):
        split_header_list('"open, b')


# --- Via, addresses, URIs, CSeq -------------------------------------------------------------


def test_parse_via_variants() -> None:
    v = parse_via("SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bK1")
    assert v.has_rport and v.rport is None and v.received is None
    v = parse_via("SIP/2.0/udp host.example;rport=5062;received=203.0.113.9;branch=z9hG4bK2")
    assert (v.transport, v.port, v.rport, v.received) == ("UDP", None, 5062, "203.0.113.9")
    v = parse_via("SIP/2.0/TCP [2001:db8::1]:5060;branch=z9hG4bK3;received=2001:db8::9")
    assert v.host == "[2001:db8::1]" and v.port == 5060 and v.received == "2001:db8::9"
    with pytest.raises(SipParseError):
        parse_via("SIP/2.0/UDP h;rport=\u00b2")  # not a token character
    assert Via("UDP", "h", None, {"rport": "\u00b2"}).rport is None  # '²'.isdigit() is True
    v = parse_via("SIP  /   2.0  /UDP     192.0.2.2 ; branch =  z9hG4bK4 ")
    assert v.branch == "z9hG4bK4"
    assert str(parse_via("SIP/2.0/UDP h:5;rport;branch=x")) == "SIP/2.0/UDP h:5;rport;branch=x"
    for bad in (
        "SIP/3.0/UDP h",
        "SIP/2.0 UDP h",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP h:99999",
        "SIP/2.0/UDP h;;branch=1",
        "SIP/2.0/UDP h;branch=1;branch=2",
        "SIP/2.0/UDP h junk",
    ):
        with pytest.raises(SipParseError):
            parse_via(bad)


def test_parse_name_addr_variants() -> None:
    na = parse_name_addr('"Bell, Alexander" <sip:a.g.bell@example.com>;tag=43')
    assert na.display == "Bell, Alexander" and na.tag == "43" and na.user == "a.g.bell"
    na = parse_name_addr("caller<sip:caller@example.com>;tag=323")
    assert na.display == "caller"
    na = parse_name_addr("sip:user@example.com;tag=1 ")
    assert na.display is None and str(na.uri) == "sip:user@example.com" and na.tag == "1"
    na = parse_name_addr('"quote \\" inside" <sips:bob@[2001:db8::5]:5061;transport=tls>;q=0.5')
    assert na.display == 'quote " inside'
    assert isinstance(na.uri, SipUri)
    assert (na.uri.scheme, na.uri.host, na.uri.port) == ("sips", "[2001:db8::5]", 5061)
    assert na.params == {"q": "0.5"}
    na = parse_name_addr("<tel:+1-201-555-0123;phone-context=example.com>")
    assert na.user == "+1-201-555-0123" and na.uri.params == {"phone-context": "example.com"}
    na = parse_name_addr("<urn:service:sos>")
    assert isinstance(na.uri, AbsoluteUri) and na.user is None and str(na.uri) == "urn:service:sos"
    assert str(parse_name_addr('"A" <sip:a@b>;tag=x')) == '"A" <sip:a@b>;tag=x'
    for bad in (
        '"unterminated <sip:a@b>',
        "Bell, Alexander <sip:a@b>",
        "< sip:a@b >",
        "<sip:a@b",
        "<>",
        "sip:user@example.com?Route=%3Csip:x%3E",
        "no-scheme",
        "<sip:a@b>;;",
        "<sip:a@b>;tag=1;tag=2",
        "<sip:a@b:0>",
    ):
        with pytest.raises(SipParseError):
            parse_name_addr(bad)


def test_sip_uri_parse_and_str() -> None:
    uri = SipUri.parse("sip:alice:secret@atlanta.example.com:5070;transport=tcp;lr?subject=x&h=y")
    assert (uri.user, uri.host, uri.port) == ("alice", "atlanta.example.com", 5070)
    assert uri.params == {"transport": "tcp", "lr": None}
    assert uri.headers == {"subject": "x", "h": "y"}
    assert "secret" not in str(uri) and "secret" not in repr(uri)
    assert str(uri) == "sip:alice@atlanta.example.com:5070;transport=tcp;lr?subject=x&h=y"
    assert str(SipUri.parse("SIPS:Bob@Example.COM")) == "sips:Bob@Example.COM"
    assert (
        SipUri.parse("sip:user;par=u%40example.net@example.com").user == "user;par=u%40example.net"
    )
    assert SipUri.parse("sip:[2001:db8::1]").host == "[2001:db8::1]"
    assert str(SipUri("sip", None, "h", 5060, {"lr": None})) == "sip:h:5060;lr"
    for bad in ("sip:", "sip:a@", "sip:a b@c", "sip:h:70000", "sip:h;=1", "http://x", "sip:h?x"):
        with pytest.raises(SipParseError):
            SipUri.parse(bad)


def test_parse_cseq() -> None:
    assert parse_cseq("0009\t INVITE") == (9, "INVITE")
    assert parse_cseq(str(2**31 - 1) + " BYE").seq == 2**31 - 1
    for bad in (str(2**31) + " BYE", "1", "x INVITE", "-1 INVITE", "1 INVITE extra"):
        with pytest.raises(SipParseError):
            parse_cseq(bad)


# --- validation and limits ------------------------------------------------------------------


def test_missing_mandatory_headers_fail_with_partial_message() -> None:
    data = minimal().replace(b"Call-ID: minimal-1\r\n", b"")
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert "Call-ID" in str(info.value)
    assert isinstance(info.value.partial, SipRequest)


def test_cseq_method_mismatch_can_still_be_answered_400() -> None:
    data = minimal().replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE")
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    err = info.value
    assert err.status == 400 and isinstance(err.partial, SipRequest)
    response = make_response(err.partial, err.status)
    wire = bytes(response)
    assert wire.startswith(b"SIP/2.0 400 Bad Request\r\n")
    assert b"branch=z9hG4bKmin" in wire and b"CSeq: 1 INVITE" in wire


def test_content_length_rules_for_datagrams() -> None:
    body = b"0123456789"
    assert parse_message(minimal(body=body)).body == body
    # trailing octets beyond Content-Length are ignored (RFC 3261 18.3)
    assert parse_message(minimal(body=body) + b"garbage").body == body
    # no Content-Length on UDP: the body is the rest of the datagram
    no_cl = crlf(MINIMAL + "\n") + b"rest"
    assert parse_message(no_cl).body == b"rest"
    with pytest.raises(SipParseError) as info:
        parse_message(minimal(body=body)[:-1])
    assert info.value.partial is not None
    for bad in (b"-1", b"five", b"1 2", b"99999999999", b"\xd9\xa3"):
        data = crlf(MINIMAL) + b"Content-Length: " + bad + b"\r\n\r\n"
        with pytest.raises(SipParseError):
            parse_message(data)
    twice = crlf(MINIMAL + "Content-Length: 0\nContent-Length: 0\n\n")
    with pytest.raises(SipParseError):
        parse_message(twice)


def test_limits() -> None:
    with pytest.raises(SipParseError):
        parse_message(minimal(body=b"x" * 70_000))
    with pytest.raises(SipParseError):
        parse_message(minimal("X-Big: " + "a" * (MAX_HEADER_BYTES + 10) + "\n"))
    with pytest.raises(SipParseError):
        parse_message(minimal("".join(f"X-H{i}: {i}\n" for i in range(100))))
    with pytest.raises(SipParseError):
        parse_message(minimal("X-Long: " + "a" * 9000 + "\n"))
    many_vias = "Via: " + ", ".join(f"SIP/2.0/UDP h{i}" for i in range(120)) + "\n"
    with pytest.raises(SipParseError):
        parse_message(minimal(many_vias))


def test_bare_line_feeds_and_carriage_returns_are_rejected() -> None:
    with pytest.raises(SipParseError):
        parse_message(minimal().replace(b"\r\n", b"\n"))
    with pytest.raises(SipParseError):
        parse_message(minimal("X-A: one\rX-B: two\n"))
    with pytest.raises(SipParseError):
        parse_message(minimal("X-A: one\nX-B: two\n").replace(b"X-A: one\r\n", b"X-A: one\n"))


def test_latin1_display_name_is_decoded_not_rejected() -> None:
    data = minimal().replace(b"From: <sip:a@192.0.2.1>", b'From: "Jos\xe9" <sip:a@192.0.2.1>')
    msg = parse_message(data)
    assert msg.from_.display == "José"
    assert bytes(msg).decode("utf-8")  # serializes as valid UTF-8


def test_status_line_variants() -> None:
    head = (
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\nFrom: <sip:a@b>;tag=1\nTo: <sip:c@d>;tag=2\n"
    )
    head += "Call-ID: r1\nCSeq: 1 INVITE\n"
    ok = parse_message(with_body("SIP/2.0 180 Ringing\n" + head, b""))
    assert isinstance(ok, SipResponse) and (ok.status, ok.reason) == (180, "Ringing")
    trying = parse_message(with_body("SIP/2.0 100 \n" + head, b""))
    assert isinstance(trying, SipResponse) and trying.reason == ""
    for bad in (
        "SIP/2.0 99 Low",
        "SIP/2.0 700 High",
        "SIP/2.0 2000 X",
        "SIP/3.0 200 OK",
        "SIP/2.0 1²3 X",
    ):
        with pytest.raises(SipParseError):
            parse_message(with_body(bad + "\n" + head, b""))


def test_unknown_uri_scheme_in_request_uri_is_parsed_for_a_416() -> None:
    data = minimal().replace(
        b"OPTIONS sip:198.51.100.7 SIP/2.0", b"OPTIONS urn:service:sos SIP/2.0"
    )
    msg = parse_message(data)
    assert isinstance(msg, SipRequest) and isinstance(msg.request_uri, AbsoluteUri)


def test_version_other_than_2_0_is_505() -> None:
    data = minimal().replace(b" SIP/2.0\r\nVia", b" SIP/3.0\r\nVia")
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status == 505


def test_datagram_limit_is_513() -> None:
    with pytest.raises(SipError) as info:
        parse_message(b"x" * 65_536)
    assert info.value.status == 513


# --- responses ----------------------------------------------------------------------------------


def test_make_response_copies_dialog_headers_and_adds_to_tag() -> None:
    req = parse_message(ASTERISK_INVITE)
    assert isinstance(req, SipRequest)
    resp = make_response(
        req,
        200,
        to_tag="srv-1",
        headers={"Contact": "<sip:ingest@198.51.100.7>", "Supported": "timer"},
        body=b"v=0\r\n",
        content_type="application/sdp",
    )
    assert resp.reason == "OK"
    h = resp.headers
    assert h.get_all("via") == req.headers.get_all("via")
    assert h["from"] == req.headers["from"]
    assert h["to"] == req.headers["to"] + ";tag=srv-1"
    assert h["call-id"] == req.headers["call-id"] and h["cseq"] == req.headers["cseq"]
    assert h["content-type"] == "application/sdp" and h["contact"] == "<sip:ingest@198.51.100.7>"
    wire = bytes(resp)
    assert wire.startswith(b"SIP/2.0 200 OK\r\n")
    assert wire.endswith(b"Content-Length: 5\r\n\r\nv=0\r\n")
    assert parse_message(wire).to.tag == "srv-1"
    # an existing To tag (a request inside a dialog) is not doubled
    in_dialog = SipRequest(req.method, req.uri, req.headers.copy(), req.body)
    in_dialog.headers.set("To", h["to"])
    again = make_response(in_dialog, 200, to_tag="x")
    assert again.headers["to"].count("tag=") == 1


def test_make_response_reasons_and_timestamp() -> None:
    req = parse_message(minimal("Timestamp: 54\n"))
    assert isinstance(req, SipRequest)
    trying = make_response(req, 100)
    assert trying.reason == "Trying" and trying.headers["timestamp"] == "54"
    assert "timestamp" not in make_response(req, 180).headers
    assert make_response(req, 488).reason == "Not Acceptable Here"
    assert make_response(req, 599).reason == "Unknown"
    assert make_response(req, 403, "Trunk disabled").reason == "Trunk disabled"
    with pytest.raises(ValueError):
        make_response(req, 403, "bad\r\nX: y")


def test_apply_rport_rfc3581() -> None:
    def request(via: str) -> SipRequest:
        msg = parse_message(
            minimal().replace(b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKmin", via.encode())
        )
        assert isinstance(msg, SipRequest)
        return msg

    # rport empty: filled, and received added even though the address is the same (RFC 3581 4)
    req = request("SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bKmin")
    apply_rport(req, "192.0.2.1", 40000)
    assert req.via.rport == 40000 and req.via.received == "192.0.2.1"
    assert "rport=40000" in bytes(make_response(req, 200)).decode()
    # NAT: different source address
    req = request("SIP/2.0/UDP 10.0.0.5:5060;rport;branch=z9hG4bKmin")
    apply_rport(req, "203.0.113.7", 61000)
    assert (req.via.received, req.via.rport) == ("203.0.113.7", 61000)
    # no rport, same address: untouched
    req = request("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKmin")
    before = req.headers["via"]
    apply_rport(req, "192.0.2.1", 5060)
    assert req.headers["via"] == before
    # no rport, hostname sent-by: received only
    req = request("SIP/2.0/UDP pbx.example.com;branch=z9hG4bKmin")
    apply_rport(req, "192.0.2.44", 5060)
    assert req.via.received == "192.0.2.44" and not req.via.has_rport
    # rport already carrying a value is left alone; IPv6 spelled differently is the same address
    req = request("SIP/2.0/UDP [2001:db8::1]:5060;rport=5060;branch=z9hG4bKmin")
    apply_rport(req, "2001:db8:0::1", 5060)
    assert req.via.rport == 5060 and req.via.received == "2001:db8:0::1"


def test_require_supported() -> None:
    req = parse_message(SIPREC_INVITE)
    assert isinstance(req, SipRequest)
    require_supported(req, ["siprec", "timer"])
    with pytest.raises(UnsupportedExtension) as info:
        require_supported(req, ["timer"])
    assert info.value.status == 420 and info.value.unsupported == ("siprec",)
    assert info.value.option_tags == ("siprec",)
    ack = parse_message(minimal("Require: foo\n").replace(b"OPTIONS", b"ACK"))
    assert isinstance(ack, SipRequest)
    require_supported(ack, [])


def test_constructing_requests_for_the_client_side() -> None:
    req = SipRequest(
        "BYE",
        "sip:a@192.0.2.1",
        [
            ("Via", "SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKbye"),
            ("From", "<sip:b@198.51.100.7>;tag=2"),
            ("To", "<sip:a@192.0.2.1>;tag=1"),
            ("Call-ID", "c"),
            ("CSeq", "2 BYE"),
            ("Max-Forwards", "70"),
        ],
    )
    back = parse_message(bytes(req))
    assert isinstance(back, SipRequest) and back.cseq == (2, "BYE")
    assert bytes(back).endswith(b"Content-Length: 0\r\n\r\n")
