# ruff: noqa: E501 - wire data typed in from RFC 4475, long lines included
"""A selection of the RFC 4475 torture tests, typed in from the RFC.

Valid messages must parse with the values the RFC describes; invalid ones must raise
SipParseError (never anything else). Where the RFC allows either behaviour we say which one
we chose. Messages are written with \\n and sent with CRLF; bodies whose Content-Length the RFC
states are checked against it, which also proves the typing is exact.
"""

from __future__ import annotations

import pytest

from sip_ingest.sip import (
    AbsoluteUri,
    AuthError,
    SipParseError,
    SipRequest,
    SipResponse,
    parse_authorization,
    parse_message,
    parse_name_addr,
)
from sip_ingest.sip.multipart import parse_multipart
from tests.sip_ingest.sip.samples import crlf


def rfc_sdp(ip_o: str, ip_c: str, t: str = "0 0") -> str:
    return (
        f"v=0\no=mhandley 29739 7272939 IN IP4 {ip_o}\ns=-\nc=IN IP4 {ip_c}\nt={t}\n"
        "m=audio 49217 RTP/AVP 0 12\nm=video 3227 RTP/AVP 31\na=rtpmap:31 LPC\n"
    )


def body_of(data: bytes) -> bytes:
    return data[data.index(b"\r\n\r\n") + 4 :]


# --- 3.1.1 valid messages ----------------------------------------------------------------------

WSINV = crlf(
    """INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : 150
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33

"""
    + rfc_sdp("192.0.2.3", "192.0.2.4")
)


def test_wsinv_short_tortuous_invite() -> None:
    assert len(body_of(WSINV)) == 150
    msg = parse_message(WSINV)
    assert isinstance(msg, SipRequest)
    assert msg.request_uri.params == {"unknownparam": None}
    assert msg.to.tag == "1918181833n" and msg.to.display is None
    assert msg.from_.display == 'J Rosenberg \\"'
    assert msg.from_.tag == "98asjd8"
    assert msg.headers.get_int("max-forwards") == 68
    assert msg.cseq == (9, "INVITE")
    assert msg.headers["subject"] == ""
    assert msg.headers["newfangledheader"] == "newfangled value continued newfangled value"
    assert msg.headers["unknownheaderwithunusualvalue"] == ";;,,;;,;"
    vias = msg.vias
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    contact = parse_name_addr(msg.headers["contact"])
    assert contact.display == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    route = parse_name_addr(msg.headers["route"])
    assert route.uri.params == {"lr": None, "unknownwith": "value", "unknown-no-value": None}
    assert len(msg.body) == 150


INTMETH = (
    b"!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/"
    b"crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~\r\n"
    b'To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:1_unusual.URI~(to-be!sure)&isn\'t+it$/crazy?,/;;*'
    b"@example.com>\r\n"
    b"From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\""
    + "работающий".encode()
    + b"\";tag=_token~1'+`*%!-.\r\n"
    b"Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{\r\n"
    b"CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~\r\n"
    b"Max-Forwards: 255\r\n"
    b"extensionHeader-!.%*+_`'~:" + "\ufeff大停電".encode() + b"\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_intmeth_wide_range_of_valid_characters() -> None:
    msg = parse_message(INTMETH)
    assert isinstance(msg, SipRequest)
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert msg.request_uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert "pas$wo~d" not in str(msg.request_uri)  # the password is never kept
    assert msg.via.branch == "z9hG4bK-.!%66*_+`'~"
    assert msg.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert msg.from_.display == "token1~` token2'+_ token3*%!.-"
    assert msg.from_.params["fromparam''~+*_!.-%"] == '"работающий"'
    assert msg.from_.tag == "_token~1'+`*%!-."
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.headers["extensionHeader-!.%*+_`'~"] == "\ufeff大停電"


ESC01 = crlf(
    """INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0
To: sip:%75se%72@example.com
From: <sip:I%20have%20spaces@example.net>;tag=938
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: 150

"""
    + rfc_sdp("192.0.2.1", "192.0.2.1")
)


def test_esc01_percent_escapes_are_kept_verbatim() -> None:
    msg = parse_message(ESC01)
    assert isinstance(msg, SipRequest)
    assert msg.request_uri.user == "sips%3Auser%40example.com"
    assert msg.to.user == "%75se%72"
    assert msg.from_.user == "I%20have%20spaces"
    contact = parse_name_addr(msg.headers["contact"])
    assert contact.uri.params == {"%6c%72": None, "n%61me": "v%61lue%25%34%31"}
    assert msg.content_type == "application/sdp" and len(msg.body) == 150


ESCNULL = crlf(
    """REGISTER sip:example.com SIP/2.0
To: sip:null-%00-null@example.com
From: sip:null-%00-null@example.com;tag=839923423
Max-Forwards: 70
Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw
Contact: <sip:%00@host5.example.com>
Contact: <sip:%00%00@host5.example.com>
L:0

"""
)


def test_escnull_escaped_nulls_in_uris() -> None:
    msg = parse_message(ESCNULL)
    assert msg.to.user == "null-%00-null" and msg.from_.tag == "839923423"
    users = [parse_name_addr(c).user for c in msg.headers.get_all("contact")]
    assert users == ["%00", "%00%00"]
    assert msg.body == b""


ESC02 = crlf(
    """RE%47IST%45R sip:registrar.example.com SIP/2.0
To: "%Z%45" <sip:resource@example.com>
From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23
Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209%fzsnel234
CSeq: 29344 RE%47IST%45R
Max-Forwards: 70
Contact: <sip:alias1@host1.example.com>
C%6Fntact: <sip:alias2@host2.example.com>
Contact: <sip:alias3@host3.example.com>
l: 0

"""
)


def test_esc02_percent_is_not_an_escape_outside_uris() -> None:
    msg = parse_message(ESC02)
    assert isinstance(msg, SipRequest) and msg.method == "RE%47IST%45R"
    assert msg.to.display == "%Z%45"
    assert msg.via.branch == "z9hG4bK209%fzsnel234"
    assert len(msg.headers.get_all("contact")) == 2
    assert msg.headers["C%6Fntact"] == "<sip:alias2@host2.example.com>"


LWSDISP = crlf(
    """OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: caller<sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID: lwsdisp.1234abcd@funky.example.com
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw
l: 0

"""
)


def test_lwsdisp_no_space_before_angle_bracket() -> None:
    msg = parse_message(LWSDISP)
    assert msg.from_.display == "caller" and msg.from_.tag == "323"


def _longreq() -> bytes:
    long_name = "extreme" * 10
    vias = "\n".join(
        f"{name} SIP/2.0/TCP sip{n}.example.com"
        for n, name in zip(
            range(33, 0, -1),
            [
                "Via:",
                "v:",
                "V:",
                "Via:",
                "ViA:",
                "VIa:",
                "VIA:",
                "via:",
                "viA:",
                "vIa:",
                "vIA:",
                "V :",
                "v :",
                "V  :",
                "v  :",
                "Via :",
                "Via  :",
            ]
            + ["Via:"] * 16,
            strict=True,
        )
    )
    return crlf(
        f"""INVITE sip:user@example.com SIP/2.0
To: "I have a user name of {long_name} proportion"<sip:user@example.com:6000;unknownparam1=very{"long" * 20}value;longparam{"name" * 25}=shortvalue;very{"long" * 25}ParameterNameWithNoValue>
F: sip:{"amazinglylongcallername" * 5}@example.net;tag={"12982" * 30}424;unknownheaderparam{"name" * 20}=unknowheaderparam{"value" * 15};unknownValueless{"paramname" * 10}
Call-ID: longreq.one{"really" * 20}longcallid
CSeq: 3882340 INVITE
Unknown-{"Long" * 20}-Name: unknown-{"long" * 20}-value; unknown-{"long" * 20}-parameter-name = unknown-{"long" * 20}-parameter-value
{vias}
Via: SIP/2.0/TCP host.example.com;received=192.0.2.5;branch=very{"long" * 50}branchvalue
Max-Forwards: 70
Contact: <sip:{"amazinglylongcallername" * 5}@host5.example.net>
Content-Type: application/sdp
l: 150

"""
        + rfc_sdp("192.0.2.1", "192.0.2.1")
    )


def test_longreq_long_values_and_many_vias() -> None:
    msg = parse_message(_longreq())
    assert msg.to.display and msg.to.display.endswith("proportion")
    assert msg.to.uri.port == 6000 and len(msg.to.uri.params) == 3
    assert len(msg.from_.tag or "") == 153
    vias = msg.vias
    assert len(vias) == 34
    assert [v.host for v in vias[:3]] == [
        "sip33.example.com",
        "sip32.example.com",
        "sip31.example.com",
    ]
    assert vias[-1].received == "192.0.2.5" and (vias[-1].branch or "").endswith("branchvalue")
    assert msg.via.branch is None  # an RFC 2543 hop without branch is not our business to reject
    assert len(msg.body) == 150


DBLREQ = crlf(
    """REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=43251j3j324
Max-Forwards: 8
I: dblreq.0ha0isndaksdj99sdfafnl3lk233412
Contact: sip:j.user@host.example.com
CSeq: 8 REGISTER
Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492
Content-Length: 0


INVITE sip:joe@example.com SIP/2.0
t: sip:joe@example.com
From: sip:caller@example.net;tag=141334
Max-Forwards: 8
Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234
Content-Type: application/sdp
Content-Length: 150

"""
    + rfc_sdp("192.0.2.15", "192.0.2.15")
)


def test_dblreq_extra_octets_in_a_datagram_are_ignored() -> None:
    msg = parse_message(DBLREQ)
    assert isinstance(msg, SipRequest) and msg.method == "REGISTER"
    assert msg.body == b"" and msg.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"


SEMIURI = crlf(
    """OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Call-ID: semiuri.0ha0isndaksdj
CSeq: 8 OPTIONS
Accept: application/sdp, application/pkcs7-mime,
        multipart/mixed, multipart/signed,
        message/sip, message/sipfrag
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw
l: 0

"""
)


def test_semiuri_semicolon_in_user_part() -> None:
    msg = parse_message(SEMIURI)
    assert isinstance(msg, SipRequest)
    assert msg.request_uri.user == "user;par=u%40example.net"
    assert msg.request_uri.host == "example.com" and msg.request_uri.params == {}
    assert len(msg.headers.get_list("accept")) == 6


TRANSPORTS = crlf(
    """OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: <sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID:  transports.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw
Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf
Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee
l: 0

"""
)


def test_transports_varied_and_unknown() -> None:
    msg = parse_message(TRANSPORTS)
    assert [v.transport for v in msg.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert msg.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def test_mpart01_multipart_with_binary_part() -> None:
    binary = bytes(range(256)) * 2  # NULs and every other octet, like the RFC's DER blob
    body = (
        b"--7a9cbec02ceef655\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n"
        b"\r\nHello\r\n--7a9cbec02ceef655\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n" + binary + b"\r\n--7a9cbec02ceef655--\r\n"
    )
    head = crlf(
        """MESSAGE sip:kumiko@example.org SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport
Max-Forwards: 70
Route: <sip:127.0.0.1:5080>
Identity: r5mwreLuyDRYBi/0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+813gvYjcBUaZngQmXc9WNZSDNGCzA+fWl9MEUHWIZo1CeJebdY/XlgKeTa0Olvq0rt70Q5jiSfbqMJmQFteeivUhkMWYUA=
Contact: <sip:fluffy@127.0.0.1:5070>
To: <sip:kumiko@example.org>
From: <sip:fluffy@example.com>;tag=2fb0dcc9
Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..
CSeq: 1 MESSAGE
Content-Transfer-Encoding: binary
Content-Type: multipart/mixed;boundary=7a9cbec02ceef655
Date: Sat, 15 Oct 2005 04:44:56 GMT
User-Agent: SIPimp.org/0.2.5 (curses)
"""
    )
    data = head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    msg = parse_message(data)
    assert msg.via.port == 5070 and msg.via.has_rport
    parts = parse_multipart(msg.headers["content-type"], msg.body)
    assert [p.content_type for p in parts] == ["text/plain", "application/octet-stream"]
    assert parts[0].body == b"Hello" and parts[1].body == binary


UNREASON = crlf(
    "SIP/2.0 200 = 2**3 * 5**2 но сто девяносто девять - простое\n"
    """Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Call-ID: unreason.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: 154
Content-Type: application/sdp
Contact: <sip:user@host198.example.com>

""" + rfc_sdp("192.0.2.198", "192.0.2.198")
)


def test_unreason_utf8_reason_phrase() -> None:
    assert len(body_of(UNREASON)) == 154
    msg = parse_message(UNREASON)
    assert isinstance(msg, SipResponse)
    assert msg.status == 200 and msg.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"


NOREASON = crlf(
    """SIP/2.0 100 \nVia: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: noreason.asndj203insdf99223ndf
CSeq: 35 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
Contact: <sip:user@host105.example.com>

"""
)


def test_noreason_empty_reason_phrase() -> None:
    msg = parse_message(NOREASON)
    assert isinstance(msg, SipResponse) and (msg.status, msg.reason) == (100, "")


BADBRANCH = crlf(
    """OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK
Accept: application/sdp
Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n
CSeq: 8 OPTIONS
l: 0

"""
)

INV2543 = crlf(
    """INVITE sip:UserB@example.com SIP/2.0
Via: SIP/2.0/UDP iftgw.example.com
From: <sip:+13035551111@ift.client.example.net;user=phone>
Record-Route: <sip:UserB@example.com;maddr=ss1.example.com>
To: sip:+16505552222@ss1.example.net;user=phone
Call-ID: inv2543.1717@ift.client.example.com
CSeq: 56 INVITE
Content-Type: application/sdp

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.5
s=-
c=IN IP4 192.0.2.5
t=0 0
m=audio 49217 RTP/AVP 0
"""
)

NOVELSC = crlf(
    """OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: novelsc.asdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234
Content-Length: 0

"""
)

UNKSM2 = crlf(
    """REGISTER sip:example.com SIP/2.0
To: isbn:2983792873
From: <http://www.example.com>;tag=3234233
Call-ID: unksm2.daksdj@hyphenated-host.example.com
CSeq: 234902 REGISTER
Max-Forwards: 70
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw
Contact: <name:John_Smith>
l: 0

"""
)

BCAST = crlf(
    """SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23
Call-ID: bcast.0384840201234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: 154
Content-Type: application/sdp
Contact: <sip:user@host28.example.com>

"""
    + rfc_sdp("192.0.2.198", "192.0.2.198")
)

REGAUT01 = crlf(
    """REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=87321hj23128
Max-Forwards: 8
Call-ID: regaut01.0ha0isndaksdj
CSeq: 9338 REGISTER
Via: SIP/2.0/TCP 192.0.2.253;branch=z9hG4bKkdjuw
Authorization: NoOneKnowsThisScheme opaque-data=here
Content-Length:0

"""
)


def test_other_valid_messages() -> None:
    assert parse_message(BADBRANCH).via.branch == "z9hG4bK"
    inv = parse_message(INV2543)
    assert inv.via.branch is None and inv.from_.tag is None
    assert inv.body.startswith(b"v=0") and inv.to.uri.params == {}
    assert inv.to.params == {"user": "phone"}  # addr-spec form: ;user=phone is a header param
    novel = parse_message(NOVELSC)
    assert isinstance(novel, SipRequest) and isinstance(novel.request_uri, AbsoluteUri)
    unk = parse_message(UNKSM2)
    assert isinstance(unk.to.uri, AbsoluteUri) and unk.to.uri.scheme == "isbn"
    assert str(unk.from_.uri) == "http://www.example.com"
    bcast = parse_message(BCAST)
    assert isinstance(bcast, SipResponse) and len(bcast.vias) == 2
    regaut = parse_message(REGAUT01)
    with pytest.raises(AuthError) as info:
        parse_authorization(regaut.headers["authorization"])
    assert info.value.status == 401  # re-challenge with a scheme we understand


BADDATE = crlf(
    """INVITE sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=2234923
Max-Forwards: 70
Call-ID: baddate.239423mnsadf3j23lj42--sedfnm234
CSeq: 1392934 INVITE
Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw
Date: Fri, 01 Jan 2010 16:00:00 EST
Contact: <sip:caller@host5.example.net>
Content-Type: application/sdp
Content-Length: 150

"""
    + rfc_sdp("192.0.2.5", "192.0.2.5")
)


def test_baddate_is_accepted_because_we_never_use_date() -> None:
    # RFC 4475 3.1.2.12 allows either; the liberal choice keeps such PBXes working.
    assert parse_message(BADDATE).headers["date"].endswith("EST")


# --- 3.1.2 invalid messages ------------------------------------------------------------------

INVALID = {
    "badinv01": """INVITE sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=134161461246
Max-Forwards: 7
Call-ID: badinv01.0ha0isndaksdjasdf3234nas
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;;,;,,
Contact: "Joe" <sip:joe@example.org>;;;;
Content-Length: 152
Content-Type: application/sdp

"""
    + rfc_sdp("192.0.2.15", "192.0.2.15"),
    "clerr": """INVITE sip:user@example.com SIP/2.0
Max-Forwards: 80
To: sip:j.user@example.com
From: sip:caller@example.net;tag=93942939o2
Contact: <sip:caller@hungry.example.net>
Call-ID: clerr.0ha0isndaksdjweiafasdk3
CSeq: 8 INVITE
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523
Content-Type: application/sdp
Content-Length: 9999

"""
    + rfc_sdp("192.0.2.155", "192.0.2.155"),
    "ncl": """INVITE sip:user@example.com SIP/2.0
Max-Forwards: 254
To: sip:j.user@example.com
From: sip:caller@example.net;tag=32394234
Call-ID: ncl.0ha0isndaksdj2193423r542w35
CSeq: 0 INVITE
Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw
Contact: <sip:caller@example53.example.net>
Content-Type: application/sdp
Content-Length: -999

"""
    + rfc_sdp("192.0.2.53", "192.0.2.53"),
    "scalar02": """REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3
To: <sip:user@example.com>
From: <sip:user@example.com>;tag=239232jh3
CSeq: 36893488147419103232 REGISTER
Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32
Max-Forwards: 300
Expires: 1"""
    + "0" * 100
    + """
Contact: <sip:user@host129.example.com>
  ;expires=280297596632815
Content-Length: 0

""",
    "scalarlg": """SIP/2.0 503 Service Unavailable
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129
To: <sip:user@example.com>
From: <sip:other@example.net>;tag=2easdjfejw
CSeq: 9292394834772304023312 OPTIONS
Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r
Retry-After: 949302838503028349304023988
Warning: 1812 overture "In Progress"
Content-Length: 0

""",
    "quotbal": """INVITE sip:user@example.com SIP/2.0
To: "Mr. J. User <sip:j.user@example.com>
From: sip:caller@example.net;tag=93334
Max-Forwards: 10
Call-ID: quotbal.aksdj
Contact: <sip:caller@host59.example.net>
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234
Content-Type: application/sdp
Content-Length: 152

"""
    + rfc_sdp("192.0.2.15", "192.0.2.15"),
    "ltgtruri": """INVITE <sip:user@example.com> SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=39291
Max-Forwards: 23
Call-ID: ltgtruri.1@192.0.2.5
CSeq: 1 INVITE
Via: SIP/2.0/UDP 192.0.2.5
Contact: <sip:caller@host5.example.net>
Content-Type: application/sdp
Content-Length: 159

"""
    + rfc_sdp("192.0.2.5", "192.0.2.5", "3149328700 0"),
    "lwsruri": """INVITE sip:user@example.com; lr SIP/2.0
To: sip:user@example.com;tag=3xfe-9921883-z9f
From: sip:caller@example.net;tag=231413434
Max-Forwards: 5
Call-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423
CSeq: 2130706432 INVITE
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395
Contact: <sip:caller@host1.example.net>
Content-Type: application/sdp
Content-Length: 159

"""
    + rfc_sdp("192.0.2.1", "192.0.2.1", "3149328700 0"),
    "lwsstart": """INVITE  sip:user@example.com  SIP/2.0
Max-Forwards: 8
To: sip:user@example.com
From: sip:caller@example.net;tag=8814
Call-ID: lwsstart.dfknq234oi243099adsdfnawe3@example.com
CSeq: 1893884 INVITE
Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923
Contact: <sip:caller@host1.example.net>
Content-Type: application/sdp
Content-Length: 150

"""
    + rfc_sdp("192.0.2.1", "192.0.2.1"),
    "trws": """OPTIONS sip:remote-target@example.com SIP/2.0  
Via: SIP/2.0/TCP host1.examle.com;branch=z9hG4bK299342093
To: <sip:remote-target@example.com>
From: <sip:local-resource@example.com>;tag=329429089
Call-ID: trws.oicu34958239neffasdhr2345r
Accept: application/sdp
CSeq: 238923 OPTIONS
Max-Forwards: 70
Content-Length: 0

""",  # noqa: W291 - the trailing spaces are the test
    "escruri": """INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=341518
Max-Forwards: 7
Contact: <sip:caller@host39923.example.net>
Call-ID: escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5
CSeq: 149209342 INVITE
Via: SIP/2.0/UDP host-of-the-hour.example.com;branch=z9hG4bKkdjuw
Content-Type: application/sdp
Content-Length: 150

"""
    + rfc_sdp("192.0.2.1", "192.0.2.1"),
    "badaspec": """OPTIONS sip:user@example.org SIP/2.0
Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234
Max-Forwards: 70
From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423
To: "Watson, Thomas" < sip:t.watson@example.org >
Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3
Accept: application/sdp
CSeq: 3923239 OPTIONS
l: 0

""",
    "baddn": """OPTIONS sip:t.watson@example.org SIP/2.0
Via:     SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw
Max-Forwards:      70
From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43
To:      Watson, Thomas <sip:t.watson@example.org>
Call-ID: baddn.31415@c.example.com
Accept: application/sdp
CSeq:    3923239 OPTIONS
l: 0

""",
    "mismatch01": """OPTIONS sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: mismatch01.dj0234sxdfl3
CSeq: 8 INVITE
Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw
l: 0

""",
    "mismatch02": """NEWMETHOD sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: mismatch02.dj0234sxdfl3
CSeq: 8 INVITE
Contact: <sip:caller@host.example.net>
Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw
Content-Type: application/sdp
l: 138

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.1
c=IN IP4 192.0.2.1
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
""",
    "bigcode": """SIP/2.0 4294967301 better not break the receiver
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i
CSeq: 353494 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
Contact: <sip:user@host105.example.com>

""",
    "mcl01": """OPTIONS sip:user@example.com SIP/2.0
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423
To: sip:user@example.com
From: sip:other@example.net;tag=3923942
Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf
CSeq: 15932 OPTIONS
Content-Length: 13
Max-Forwards: 60
Content-Length: 5
Content-Type: text/plain

There's no way to know how many octets are supposed to be here.
""",
    "multi01": """INVITE sip:user@company.com SIP/2.0
Contact: <sip:caller@host25.example.net>
Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw
Max-Forwards: 70
CSeq: 5 INVITE
Call-ID: multi01.98asdh@192.0.2.1
CSeq: 59 INVITE
Call-ID: multi01.98asdh@192.0.2.2
From: sip:caller@example.com;tag=3413415
To: sip:user@example.com
To: sip:other@example.net
From: sip:caller@example.net;tag=2923420123
Content-Type: application/sdp
l: 154
Contact: <sip:caller@host36.example.net>
Max-Forwards: 5

"""
    + rfc_sdp("192.0.2.25", "192.0.2.25")
    + "\n",
    "insuf": """INVITE sip:user@example.com SIP/2.0
CSeq: 193942 INVITE
Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf
Content-Type: application/sdp
l: 152

"""
    + rfc_sdp("192.0.2.95", "192.0.2.95"),
}


#: What each message must be rejected for (a substring of the error), so that a test cannot pass
#: because of some incidental defect in how it was typed in.
WHY = {
    "badaspec": "malformed address",
    "baddn": "URI without a scheme",
    "badinv01": "empty element in Via list",
    "bigcode": "malformed status line",
    "clerr": "Content-Length exceeds the datagram",
    "escruri": "Request-URI must not carry headers",
    "insuf": "missing From",
    "ltgtruri": "URI without a scheme",
    "lwsruri": "malformed request line",
    "lwsstart": "malformed request line",
    "mcl01": "more than one Content-Length",
    "mismatch01": "CSeq method does not match",
    "mismatch02": "CSeq method does not match",
    "multi01": "duplicate",
    "ncl": "invalid Content-Length",
    "quotbal": "malformed address",
    "scalar02": "malformed CSeq",
    "scalarlg": "malformed CSeq",
    "trws": "malformed request line",
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_messages_raise_sip_parse_error(name: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(crlf(INVALID[name]))
    assert info.value.status == 400
    assert WHY[name] in str(info.value)


def test_invalid_requests_that_still_carry_a_usable_header_set_can_be_answered() -> None:
    for name in ("mismatch01", "mismatch02", "multi01", "scalar02", "escruri", "baddn"):
        with pytest.raises(SipParseError) as info:
            parse_message(crlf(INVALID[name]))
        assert isinstance(info.value.partial, SipRequest), name


def test_badvers_is_505() -> None:
    data = crlf(
        """OPTIONS sip:t.watson@example.org SIP/7.0
Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw
Max-Forwards:     70
From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe
To:      T. Watson <sip:t.watson@example.org>
Call-ID: badvers.31417@c.example.com
CSeq:    1 OPTIONS
l: 0

"""
    )
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status == 505


def test_regbadct_contact_with_headers_must_be_bracketed() -> None:
    data = crlf(
        """REGISTER sip:example.com SIP/2.0
To: sip:user@example.com
From: sip:user@example.com;tag=998332
Max-Forwards: 70
Call-ID: regbadct.k345asrl3fdbv@10.0.0.1
CSeq: 1 REGISTER
Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw
Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E
l: 0

"""
    )
    # Contact is parsed on demand (a UAS answers REGISTER with 405 without reading it).
    msg = parse_message(data)
    with pytest.raises(SipParseError):
        parse_name_addr(msg.headers["contact"])
