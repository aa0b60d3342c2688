"""SDP parse/serialize, SDES crypto attributes and the offer/answer rules."""

from __future__ import annotations

import base64
import itertools

import pytest

from sip_ingest.sip import SipError, SipParseError
from sip_ingest.sip.sdp import (
    CryptoAttribute,
    Origin,
    SessionDescription,
    answer,
    parse_crypto,
)
from tests.sip_ingest.sip.samples import (
    ASTERISK_SDP,
    FREESWITCH_SRTP_SDP,
    SIPP_SDP,
    SIPREC_SDP,
    SRTP_KEY_1,
    crlf,
)

LOCAL_KEY = bytes(range(200, 230))


def sdp(text: str) -> SessionDescription:
    return SessionDescription.parse(crlf(text))


def offer(media: str, session: str = "") -> SessionDescription:
    return sdp(
        "v=0\no=pbx 1 1 IN IP4 192.0.2.10\ns=-\nc=IN IP4 192.0.2.10\nt=0 0\n" + session + media
    )


def fixed_key() -> bytes:
    return LOCAL_KEY


# --- parse / serialize ----------------------------------------------------------------------


def test_parse_asterisk_offer() -> None:
    desc = SessionDescription.parse(ASTERISK_SDP)
    assert desc.origin.sess_id == "1916226" and desc.origin.sess_version == 1916226
    assert desc.session_name == "Asterisk" and desc.connection is not None
    assert desc.connection.host == "192.0.2.10"
    (audio,) = desc.media
    assert (audio.media, audio.port, audio.proto, audio.formats) == (
        "audio",
        14380,
        "RTP/AVP",
        ["0", "8", "101"],
    )
    assert audio.rtpmap(101) == ("telephone-event", 8000, None)
    assert audio.rtpmap("0") == ("PCMU", 8000, None)
    assert audio.fmtp(101) == "0-16"
    assert audio.attribute("ptime") == "20" and audio.attribute("sendrecv") == ""
    assert audio.attribute("nope") is None
    assert audio.direction == "sendrecv" and desc.media_direction(audio) == "sendrecv"


def test_serialize_round_trip_is_byte_exact_for_ordered_input() -> None:
    for raw in (ASTERISK_SDP, FREESWITCH_SRTP_SDP, SIPP_SDP, SIPREC_SDP):
        assert SessionDescription.parse(raw).to_bytes() == raw


def test_unknown_and_unmodelled_lines_are_preserved() -> None:
    raw = crlf(
        """v=0
o=- 5 6 IN IP4 192.0.2.1
s=-
i=session info
u=http://example.com/x
e=ops@example.com
c=IN IP4 192.0.2.1
b=AS:64
t=0 0
r=604800 3600 0 90000
z=2882844526 -1h
k=prompt
a=recvonly
y=unknown session line
m=audio 4000/2 RTP/AVP 0
i=media info
c=IN IP4 192.0.2.2
b=TIAS:64000
k=prompt
a=rtpmap:0 PCMU/8000
q=unknown media line
"""
    )
    desc = SessionDescription.parse(raw)
    assert desc.to_bytes() == raw
    assert desc.direction == "recvonly"
    media = desc.media[0]
    assert media.port_count == 2 and media.connection is not None
    assert desc.media_direction(media) == "recvonly"  # session level applies
    assert ("q", "unknown media line") in media.other


def test_lf_only_and_trailing_whitespace_tolerated() -> None:
    desc = SessionDescription.parse(b"v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\nm=audio 5 RTP/AVP 8 \n\n")
    assert desc.media[0].formats == ["8"]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"o=- 1 1 IN IP4 h\r\n",
        b"v=1\r\no=- 1 1 IN IP4 h\r\n",
        b"v=0\r\ns=-\r\n",
        b"v=0\r\no=- 1 x IN IP4 h\r\n",
        b"v=0\r\no=- 1 1 IN IP4 h\r\nm=audio 70000 RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 h\r\nm=audio\r\n",
        b"v=0\r\no=- 1 1 IN IP4 h\r\nbad line\r\n",
        b"v=0\r\no=- 1 1 IN IP4 h\r\nc=IN IP4\r\n",
        b"v=0\r\no=- 1 1 IN IP4 h\r\na=\r\n",
        b"v=0\r\no=- 1 1 IN IP4 h\r\nv=0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 h\r\n" + b"m=audio 1 RTP/AVP 0\r\n" * 33,
        b"v=0\r\no=- 1 1 IN IP4 h\r\nm=audio 1 RTP/AVP 0\r\na=label:1\rm=video 2 x 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 h\r\ns=a\x00b\r\n",
    ],
)
def test_malformed_sdp(raw: bytes) -> None:
    with pytest.raises(SipParseError):
        SessionDescription.parse(raw)


# --- SDES ------------------------------------------------------------------------------------


def test_parse_crypto_rfc4568_example() -> None:
    # RFC 4568 section 4 example
    c = parse_crypto(
        "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32"
    )
    assert (c.tag, c.suite, c.lifetime, c.mki) == (1, "AES_CM_128_HMAC_SHA1_80", 2**20, (1, 32))
    material = base64.b64decode("PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR")
    assert c.key == material[:16] and c.salt == material[16:] and len(c.salt) == 14
    assert c.sdp_value().endswith("inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1048576|1:32")
    assert parse_crypto(c.sdp_value()) == c
    c = parse_crypto("2 AES_256_CM_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(46)).decode())
    assert len(c.key) == 32 and len(c.salt) == 14
    c = parse_crypto(
        "3 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(SRTP_KEY_1).decode() + " KDR=0"
    )
    assert c.session_params == ("KDR=0",)


def test_crypto_key_material_is_never_in_repr() -> None:
    c = parse_crypto("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR")
    for rendering in (repr(c), str(c), f"{c}", repr([c])):
        assert "PS1uQCVe" not in rendering and "redacted" in rendering
        assert repr(c.key) not in rendering


@pytest.mark.parametrize(
    "value",
    [
        "1 AES_CM_128_HMAC_SHA1_80",
        "x AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
        "1 NULL_CIPHER inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
        "1 AES_CM_128_HMAC_SHA1_80 uri:http://x",
        "1 AES_CM_128_HMAC_SHA1_80 inline:not*base64",
        "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA",
        "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^x",
        "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1:999",
        "1234567890 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
    ],
)
def test_malformed_crypto(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_crypto(value)


# --- offer / answer ---------------------------------------------------------------------------


def test_answer_pcma_only_offer() -> None:
    answer_sdp, (media,) = answer(
        offer("m=audio 4000 RTP/AVP 8\na=rtpmap:8 PCMA/8000\n"),
        local_ip="198.51.100.7",
        ports=[20000],
    )
    assert (media.codec, media.payload_type, media.dtmf_payload_type) == ("PCMA", 8, None)
    assert media.remote_addr == ("192.0.2.10", 4000) and media.local_port == 20000
    assert media.srtp_local is None and media.srtp_remote is None
    assert media.direction == "sendrecv" and media.index == 0
    text = str(answer_sdp)
    assert "m=audio 20000 RTP/AVP 8\r\n" in text and "c=IN IP4 198.51.100.7\r\n" in text
    assert "a=rtpmap:8 PCMA/8000\r\n" in text and "telephone-event" not in text
    assert SessionDescription.parse(answer_sdp.to_bytes()).media[0].port == 20000


def test_answer_keeps_offerer_preference_and_telephone_event() -> None:
    asterisk = SessionDescription.parse(ASTERISK_SDP)
    _, (media,) = answer(asterisk, local_ip="198.51.100.7", ports=[20002])
    assert (media.codec, media.payload_type, media.dtmf_payload_type) == ("PCMU", 0, 101)
    assert media.ptime == 20
    pcma_first = offer(
        "m=audio 4000 RTP/AVP 8 0 96\na=rtpmap:8 PCMA/8000\na=rtpmap:0 PCMU/8000\n"
        "a=rtpmap:96 telephone-event/8000\na=fmtp:96 0-15\n"
    )
    answer_sdp, (media,) = answer(pcma_first, local_ip="198.51.100.7", ports=[20004])
    assert (media.codec, media.dtmf_payload_type) == ("PCMA", 96)
    m = answer_sdp.media[0]
    assert m.formats == ["8", "96"] and m.fmtp(96) == "0-15"
    assert m.rtpmap(96) == ("telephone-event", 8000, None)


def test_answer_static_payload_without_rtpmap_and_dynamic_pcmu() -> None:
    _, (media,) = answer(offer("m=audio 4000 RTP/AVP 18 0\n"), local_ip="h", ports=[1])
    assert media.codec == "PCMU"
    dyn = offer("m=audio 4000 RTP/AVP 97 98\na=rtpmap:97 PCMU/16000\na=rtpmap:98 pcmu/8000\n")
    _, (media,) = answer(dyn, local_ip="h", ports=[1])
    assert (media.codec, media.payload_type) == ("PCMU", 98)


def test_answer_srtp_offer_with_crypto() -> None:
    fs = SessionDescription.parse(FREESWITCH_SRTP_SDP)
    answer_sdp, (media,) = answer(
        fs, local_ip="198.51.100.7", ports=[20010], srtp_key_factory=fixed_key
    )
    assert media.codec == "PCMA"  # FreeSWITCH listed 8 first
    remote, local = media.srtp_remote, media.srtp_local
    assert remote is not None and local is not None
    # the _32 line (tag 1) is skipped; the _80 line (tag 2) is used and answered under tag 2
    assert (remote.tag, remote.suite, remote.key_salt) == (2, "AES_CM_128_HMAC_SHA1_80", SRTP_KEY_1)
    assert (local.tag, local.suite, local.key_salt) == (2, "AES_CM_128_HMAC_SHA1_80", LOCAL_KEY)
    m = answer_sdp.media[0]
    assert m.proto == "RTP/SAVP"
    (crypto,) = m.crypto
    assert crypto == local
    assert "inline:" + base64.b64encode(LOCAL_KEY).decode() in str(answer_sdp)


def test_answer_uses_fresh_random_keys_by_default() -> None:
    fs = SessionDescription.parse(FREESWITCH_SRTP_SDP)
    keys = {answer(fs, local_ip="h", ports=[1])[1][0].srtp_local.key_salt for _ in range(5)}  # type: ignore[union-attr]
    assert len(keys) == 5


def test_answer_rejects_srtp_without_usable_crypto() -> None:
    key = base64.b64encode(SRTP_KEY_1).decode()
    for lines in (
        "",
        f"a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:{key}\n",
        f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^20|1:4\n",
        f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key} UNENCRYPTED_SRTP\n",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:garbage\n",
    ):
        with pytest.raises(SipError) as info:
            answer(offer("m=audio 4000 RTP/SAVP 0\n" + lines), local_ip="h", ports=[1])
        assert info.value.status == 488


def test_answer_rejects_video_with_port_zero_and_keeps_audio() -> None:
    o = offer(
        "m=audio 4000 RTP/AVP 0\nm=video 4002 RTP/AVP 96\na=rtpmap:96 H264/90000\n"
        "m=image 4004 udptl t38\n"
    )
    answer_sdp, negotiated = answer(o, local_ip="h", ports=[30000])
    assert [m.port for m in answer_sdp.media] == [30000, 0, 0]
    assert [m.media for m in answer_sdp.media] == ["audio", "video", "image"]
    assert answer_sdp.media[1].formats == ["96"] and answer_sdp.media[2].proto == "udptl"
    assert len(negotiated) == 1 and negotiated[0].index == 0


def test_answer_no_acceptable_audio_is_488() -> None:
    for media in (
        "m=audio 4000 RTP/AVP 18\na=rtpmap:18 G729/8000\n",
        "m=video 4000 RTP/AVP 96\n",
        "m=audio 4000 RTP/SAVPF 0\n",
        "m=audio 0 RTP/AVP 0\n",
    ):
        with pytest.raises(SipError) as info:
            answer(offer(media), local_ip="h", ports=[1] * media.startswith("m=audio"))
        assert info.value.status == 488
        assert not isinstance(info.value, SipParseError)


def test_answer_siprec_two_sendonly_streams() -> None:
    siprec = SessionDescription.parse(SIPREC_SDP)
    answer_sdp, legs = answer(siprec, local_ip="198.51.100.7", ports=[40000, 40002])
    assert [(leg.label, leg.direction, leg.remote_addr) for leg in legs] == [
        ("1", "recvonly", ("192.0.2.30", 16384)),
        ("2", "recvonly", ("192.0.2.30", 16386)),
    ]
    assert [m.label for m in answer_sdp.media] == ["1", "2"]
    assert [m.direction for m in answer_sdp.media] == ["recvonly", "recvonly"]


def test_answer_directions_are_mirrored() -> None:
    cases = {
        "sendonly": "recvonly",
        "recvonly": "sendonly",
        "inactive": "inactive",
        "sendrecv": "sendrecv",
    }
    for offered, expected in cases.items():
        _, (media,) = answer(
            offer(f"m=audio 4000 RTP/AVP 0\na={offered}\n"), local_ip="h", ports=[2]
        )
        assert media.direction == expected
    # session-level direction, and old-style hold with c=0.0.0.0
    held = offer("m=audio 4000 RTP/AVP 0\nc=IN IP4 0.0.0.0\n", session="a=sendonly\n")
    _, (media,) = answer(held, local_ip="h", ports=[2])
    assert media.direction == "recvonly" and media.remote_addr == ("0.0.0.0", 4000)


def test_answer_ports_and_origin_versioning() -> None:
    two = offer("m=audio 4000 RTP/AVP 0\nm=audio 4002 RTP/AVP 8\n")
    answer_sdp, legs = answer(two, local_ip="h", ports=[0, 5000])
    assert [m.port for m in answer_sdp.media] == [0, 5000] and [leg.index for leg in legs] == [1]
    with pytest.raises(ValueError):
        answer(two, local_ip="h", ports=[5000])
    first, _ = answer(two, local_ip="h", ports=[5000, 5002])
    second, _ = answer(two, local_ip="h", ports=[5000, 5002], origin=first.origin)
    assert second.origin.sess_id == first.origin.sess_id
    assert second.origin.sess_version == first.origin.sess_version + 1
    v6, _ = answer(two, local_ip="2001:db8::7", ports=[5000, 5002])
    assert (
        str(v6.origin).endswith("IN IP6 2001:db8::7") and str(v6.connection) == "IN IP6 2001:db8::7"
    )
    assert isinstance(first.origin, Origin)


def test_answer_mirrors_the_offer_t_line() -> None:
    o = offer("m=audio 4000 RTP/AVP 0\n").timing
    assert o == [("t", "0 0")]
    timed = sdp("v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 h\nt=3149328700 0\nm=audio 1 RTP/AVP 0\n")
    answer_sdp, _ = answer(timed, local_ip="h", ports=[9])
    assert answer_sdp.timing == [("t", "3149328700 0")]


def test_every_answer_parses_back() -> None:
    offers = [
        SessionDescription.parse(x)
        for x in (ASTERISK_SDP, FREESWITCH_SRTP_SDP, SIPP_SDP, SIPREC_SDP)
    ]
    ports = itertools.count(20000, 2)
    for o in offers:
        n = sum(1 for m in o.media if m.media == "audio")
        answer_sdp, _ = answer(o, local_ip="198.51.100.7", ports=[next(ports) for _ in range(n)])
        again = SessionDescription.parse(answer_sdp.to_bytes())
        assert again.to_bytes() == answer_sdp.to_bytes()


def test_non_ascii_digits_and_odd_formats_are_not_numbers() -> None:
    # found by fuzzing: str.isdigit() accepts superscripts that int() rejects
    with pytest.raises(SipParseError):
        SessionDescription.parse("v=0\r\no=- 1 1 IN IP4 h\r\nm=audio \u00b94680 RTP/AVP 0\r\n")
    weird = offer(
        "m=audio 4000 RTP/AVP abc 999 \u00b2 8\na=rtpmap:abc PCMU/8000\na=rtpmap:999 PCMU/8000\n"
        "a=rtpmap:\u00b2 PCMU/\u00b98000\na=rtpmap:8 PCMA/8000\n"
    )
    _, (media,) = answer(weird, local_ip="h", ports=[1])
    assert (media.codec, media.payload_type) == ("PCMA", 8)


def test_key_factory_must_return_30_bytes() -> None:
    with pytest.raises(ValueError):
        answer(
            SessionDescription.parse(FREESWITCH_SRTP_SDP),
            local_ip="h",
            ports=[1],
            srtp_key_factory=lambda: b"short",
        )
    assert isinstance(
        CryptoAttribute(1, "AES_CM_128_HMAC_SHA1_80", bytes(16), bytes(14)), CryptoAttribute
    )
