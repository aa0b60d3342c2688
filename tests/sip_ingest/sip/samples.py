# ruff: noqa: E501 - wire data: header lines are as long as PBXes make them
"""Realistic SIP traffic for the protocol-layer tests.

The PBX messages are shaped after what Asterisk (chan_pjsip), FreeSWITCH (mod_sofia) and
sipp's built-in ``uac`` scenario put on the wire; the SIPREC INVITE after a Cisco CUBE /
RFC 7866 recording session; the metadata document is the RFC 7865 complete-metadata example
(two participants, four streams, with its standardized and private extension elements).
Addresses are documentation ranges (RFC 5737).
"""

from __future__ import annotations

import base64


def crlf(text: str) -> bytes:
    """Test texts are written with \\n; SIP wants CRLF."""
    return text.replace("\n", "\r\n").encode("utf-8")


def with_body(head: str, body: bytes) -> bytes:
    """Header lines (\\n separated, no Content-Length) + a correct Content-Length + body."""
    return crlf(head.rstrip("\n") + "\n") + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


ASTERISK_SDP = crlf(
    """v=0
o=- 1916226 1916226 IN IP4 192.0.2.10
s=Asterisk
c=IN IP4 192.0.2.10
t=0 0
m=audio 14380 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
"""
)

ASTERISK_INVITE = with_body(
    """INVITE sip:+4930555000@198.51.100.7:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bKPj0b3f5c8e-5b2f-4c31-9d0e-6f1a2b3c4d5e
From: "Alice Example" <sip:+14155550100@192.0.2.10>;tag=4f2c9a7e-1b6d-4e0f-8a3c-5d7e9f1a2b3c
To: <sip:+4930555000@198.51.100.7>
Contact: <sip:asterisk@192.0.2.10:5060>
Call-ID: 8c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f
CSeq: 3847 INVITE
Allow: OPTIONS, REGISTER, SUBSCRIBE, NOTIFY, PUBLISH, INVITE, ACK, BYE, CANCEL, UPDATE, PRACK, MESSAGE, REFER
Supported: 100rel, timer, replaces, norefersub, histinfo
Session-Expires: 1800
Min-SE: 90
P-Asserted-Identity: "Alice Example" <sip:+14155550100@192.0.2.10>
Max-Forwards: 70
User-Agent: Asterisk PBX 20.5.0
Content-Type: application/sdp
""",
    ASTERISK_SDP,
)

#: Two SDES keys (key || salt, 30 bytes each); deterministic so tests can check them.
SRTP_KEY_1 = bytes(range(30))
SRTP_KEY_2 = bytes(range(100, 130))
_B64_1 = base64.b64encode(SRTP_KEY_1).decode()
_B64_2 = base64.b64encode(SRTP_KEY_2).decode()

FREESWITCH_SRTP_SDP = crlf(
    f"""v=0
o=FreeSWITCH 1732600000 1732600001 IN IP4 192.0.2.20
s=FreeSWITCH
c=IN IP4 192.0.2.20
t=0 0
m=audio 24680 RTP/SAVP 8 0 101 13
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=rtpmap:13 CN/8000
a=ptime:20
a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:{_B64_2}
a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{_B64_1}
"""
)

FREESWITCH_INVITE = with_body(
    """INVITE sip:agent-7@198.51.100.7:5061;transport=tls SIP/2.0
Via: SIP/2.0/TLS 192.0.2.20:5061;rport;branch=z9hG4bK0gK4g8mH5r1vQ
Max-Forwards: 69
From: "Extension 1001" <sip:1001@192.0.2.20>;tag=HpUy6m9NcU6Nj
To: <sip:agent-7@198.51.100.7>
Call-ID: 2f8a9b1c-7d3e-4f50-a6b7-c8d9e0f1a2b3
CSeq: 104914960 INVITE
Contact: <sip:mod_sofia@192.0.2.20:5061;transport=tls>
User-Agent: FreeSWITCH-mod_sofia/1.10.11-release~64bit
Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, INFO, UPDATE, REGISTER, REFER, NOTIFY
Supported: timer, path, replaces
Allow-Events: talk, hold, conference, refer
Content-Type: application/sdp
Content-Disposition: session
X-FS-Support: update_display,send_info
Remote-Party-ID: "Extension 1001" <sip:1001@192.0.2.20>;party=calling;screen=yes;privacy=off
""",
    FREESWITCH_SRTP_SDP,
)

SIPP_SDP = crlf(
    """v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
"""
)

#: sipp -sn uac, as sipp renders it: [len] is right-aligned in a 5 character field.
SIPP_INVITE = (
    crlf(
        """INVITE sip:service@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4242-1-0
From: sipp <sip:sipp@127.0.0.1:5061>;tag=4242SIPpTag001
To: service <sip:service@127.0.0.1:5060>
Call-ID: 1-4242@127.0.0.1
CSeq: 1 INVITE
Contact: sip:sipp@127.0.0.1:5061
Max-Forwards: 70
Subject: Performance Test
Content-Type: application/sdp
"""
    )
    + f"Content-Length: {len(SIPP_SDP):5d}\r\n\r\n".encode()
    + SIPP_SDP
)

#: RFC 7865 complete metadata: Bob sends streams 96 and 97, Paul sends 98 and 99.
RFC7865_METADATA = b"""<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns='urn:ietf:params:xml:ns:recording:1'>
  <datamode>complete</datamode>
  <group group_id="7+OTCyoxTmqmqyA/1weDAg==">
    <associate-time>2010-12-16T23:41:07Z</associate-time>
    <!-- Standardized extension -->
    <call-center xmlns='urn:ietf:params:xml:ns:callcenter'>
      <supervisor>sip:alice@atlanta.com</supervisor>
    </call-center>
    <mydata xmlns='http://example.com/my'>
      <structure>structure!</structure>
      <whatever>structure</whatever>
    </mydata>
  </group>
  <session session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <sipSessionID>ab30317f1a784dc48ff824d0d3715d86;
      remote=47755a9de7794ba387653f2099600ef2</sipSessionID>
    <group-ref>7+OTCyoxTmqmqyA/1weDAg==</group-ref>
    <!-- Standardized extension -->
    <mydata xmlns='http://example.com/my'>
      <structure>FOO!</structure>
      <whatever>bar</whatever>
    </mydata>
  </session>
  <participant participant_id="srfBElmCRp2QB23b7Mpk0w==">
    <nameID aor="sip:bob@biloxi.com">
      <name xml:lang="it">Bob</name>
    </nameID>
    <!-- Standardized extension -->
    <mydata xmlns='http://example.com/my'>
      <structure>FOO!</structure>
      <whatever>bar</whatever>
    </mydata>
  </participant>
  <participant participant_id="zSfPoSvdSDCmU3A3TRDxAw==">
    <nameID aor="sip:Paul@biloxi.com">
      <name xml:lang="it">Paul</name>
    </nameID>
  </participant>
  <stream stream_id="UAAMm5GRQKSCMVvLyl4rFw=="
      session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <label>96</label>
  </stream>
  <stream stream_id="i1Pz3to5hGk8fuXl+PbwCw=="
      session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <label>97</label>
  </stream>
  <stream stream_id="8zc6e0lYTlWIINA6GR+3ag=="
      session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <label>98</label>
  </stream>
  <stream stream_id="EiXGlc+4TruqqoDaNE76ag=="
      session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <label>99</label>
  </stream>
  <sessionrecordingassoc session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <associate-time>2010-12-16T23:41:07Z</associate-time>
  </sessionrecordingassoc>
  <participantsessionassoc
      participant_id="srfBElmCRp2QB23b7Mpk0w=="
      session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <associate-time>2010-12-16T23:41:07Z</associate-time>
  </participantsessionassoc>
  <participantsessionassoc
      participant_id="zSfPoSvdSDCmU3A3TRDxAw=="
      session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <associate-time>2010-12-16T23:41:07Z</associate-time>
  </participantsessionassoc>
  <participantstreamassoc
      participant_id="srfBElmCRp2QB23b7Mpk0w==">
    <send>i1Pz3to5hGk8fuXl+PbwCw==</send>
    <send>UAAMm5GRQKSCMVvLyl4rFw==</send>
    <recv>8zc6e0lYTlWIINA6GR+3ag==</recv>
    <recv>EiXGlc+4TruqqoDaNE76ag==</recv>
  </participantstreamassoc>
  <participantstreamassoc
      participant_id="zSfPoSvdSDCmU3A3TRDxAw==">
    <send>8zc6e0lYTlWIINA6GR+3ag==</send>
    <send>EiXGlc+4TruqqoDaNE76ag==</send>
    <recv>UAAMm5GRQKSCMVvLyl4rFw==</recv>
    <recv>i1Pz3to5hGk8fuXl+PbwCw==</recv>
  </participantstreamassoc>
</recording>
"""

SIPREC_SDP = crlf(
    """v=0
o=CiscoSystemsSIP-GW-UserAgent 3455 2549 IN IP4 192.0.2.30
s=SIP Call
c=IN IP4 192.0.2.30
t=0 0
m=audio 16384 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=label:1
a=sendonly
m=audio 16386 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=label:2
a=sendonly
"""
)

SIPREC_METADATA = b"""<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns='urn:ietf:params:xml:ns:recording:1'>
  <datamode>complete</datamode>
  <session session_id="u1x9YUP+RgKvFzq0pPd7Bw==">
    <sipSessionID>5b7d4e8a0f3c4d2e9a1b6c7d8e9f0a1b;remote=00000000000000000000000000000000</sipSessionID>
  </session>
  <participant participant_id="Fv6mI9QhQWKh3z5Q2YxWzA==">
    <nameID aor="sip:+14155550100@192.0.2.30">
      <name>Alice Example</name>
    </nameID>
  </participant>
  <participant participant_id="b6R8y3YvT4mGqk3wX1zC9g==">
    <nameID aor="sip:+4930555000@192.0.2.30"/>
  </participant>
  <stream stream_id="zN3b2Ls6T5y0yDhK8C2lVw==" session_id="u1x9YUP+RgKvFzq0pPd7Bw==">
    <label>1</label>
  </stream>
  <stream stream_id="Q0xlq8b0S0WkU6zF4u1o2A==" session_id="u1x9YUP+RgKvFzq0pPd7Bw==">
    <label>2</label>
  </stream>
  <participantstreamassoc participant_id="Fv6mI9QhQWKh3z5Q2YxWzA==">
    <send>zN3b2Ls6T5y0yDhK8C2lVw==</send>
    <recv>Q0xlq8b0S0WkU6zF4u1o2A==</recv>
  </participantstreamassoc>
  <participantstreamassoc participant_id="b6R8y3YvT4mGqk3wX1zC9g==">
    <send>Q0xlq8b0S0WkU6zF4u1o2A==</send>
    <recv>zN3b2Ls6T5y0yDhK8C2lVw==</recv>
  </participantstreamassoc>
</recording>
"""

SIPREC_BODY = (
    b"--uniqueBoundary\r\n"
    b"Content-Type: application/sdp\r\n"
    b"\r\n" + SIPREC_SDP + b"\r\n"
    b"--uniqueBoundary\r\n"
    b"Content-Type: application/rs-metadata+xml\r\n"
    b"Content-Disposition: recording-session\r\n"
    b"\r\n" + SIPREC_METADATA + b"\r\n"
    b"--uniqueBoundary--\r\n"
)

SIPREC_INVITE = with_body(
    """INVITE sip:recorder@198.51.100.7:5060;transport=tcp SIP/2.0
Via: SIP/2.0/TCP 192.0.2.30:5060;branch=z9hG4bK1e2d3c4b5a
From: <sip:src@192.0.2.30>;tag=35e195d2
To: <sip:recorder@198.51.100.7>
Call-ID: d253c800-b0d1ea39-4a7dd-3f0e0a0@192.0.2.30
CSeq: 101 INVITE
Max-Forwards: 70
Contact: <sip:src@192.0.2.30:5060;transport=tcp>;+sip.src
Require: siprec
Supported: timer, replaces
Accept: application/sdp, application/rs-metadata, application/rs-metadata-request
Allow: INVITE, OPTIONS, BYE, CANCEL, ACK, UPDATE, INFO
MIME-Version: 1.0
Content-Type: multipart/mixed;boundary=uniqueBoundary
""",
    SIPREC_BODY,
)

OPTIONS_PING = with_body(
    """OPTIONS sip:198.51.100.7:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bKPj7e3c
From: <sip:asterisk@192.0.2.10>;tag=8b0f
To: <sip:198.51.100.7>
Contact: <sip:asterisk@192.0.2.10:5060>
Call-ID: 3a7c9d1e-options
CSeq: 42 OPTIONS
Max-Forwards: 70
User-Agent: Asterisk PBX 20.5.0
""",
    b"",
)

ALL_VALID = [ASTERISK_INVITE, FREESWITCH_INVITE, SIPP_INVITE, SIPREC_INVITE, OPTIONS_PING]
