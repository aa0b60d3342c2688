"""The SIP protocol layer of the ingest node: pure functions and data, no I/O.

It sits under the transports and the transaction/call layer. Everything here is written to be
fed hostile bytes: malformed input raises :class:`SipParseError` (or another
:class:`SipError` carrying the status to answer with), never anything else, and every parse is
bounded in size and time. See the modules for the protocol decisions:

* :mod:`.message`: SIP messages, headers, URIs, Via, stream framing, responses, rport.
* :mod:`.sdp`: SDP and the offer/answer rules for G.711 + telephone-event, SDES-SRTP.
* :mod:`.multipart`: multipart/mixed bodies (SIPREC).
* :mod:`.siprec`: RFC 7865 recording metadata.
* :mod:`.digest`: server-side Digest authentication and the failure limiter.
"""

from sip_ingest.sip.digest import (
    DigestAuthenticator,
    DigestChallenge,
    DigestCredentials,
    FailureLimiter,
    Verdict,
    VerdictKind,
    authorization_header,
    compute_response,
    ha1,
    parse_authorization,
    parse_challenge,
)
from sip_ingest.sip.errors import AuthError, SipError, SipParseError, UnsupportedExtension
from sip_ingest.sip.message import (
    PING,
    AbsoluteUri,
    CSeq,
    Headers,
    KeepalivePing,
    NameAddr,
    SipRequest,
    SipResponse,
    SipUri,
    StreamFramer,
    Via,
    apply_rport,
    is_keepalive,
    make_response,
    parse_cseq,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
    require_supported,
)
from sip_ingest.sip.multipart import BodyPart, encode_multipart, find_part, parse_multipart
from sip_ingest.sip.sdp import (
    CryptoAttribute,
    MediaDescription,
    NegotiatedMedia,
    SessionDescription,
    answer,
    parse_crypto,
)
from sip_ingest.sip.siprec import (
    Participant,
    RecordingMetadata,
    Stream,
    parse_recording_metadata,
)

__all__ = [
    "PING",
    "AbsoluteUri",
    "AuthError",
    "BodyPart",
    "CSeq",
    "CryptoAttribute",
    "DigestAuthenticator",
    "DigestChallenge",
    "DigestCredentials",
    "FailureLimiter",
    "Headers",
    "KeepalivePing",
    "MediaDescription",
    "NameAddr",
    "NegotiatedMedia",
    "Participant",
    "RecordingMetadata",
    "SessionDescription",
    "SipError",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "SipUri",
    "Stream",
    "StreamFramer",
    "UnsupportedExtension",
    "Verdict",
    "VerdictKind",
    "Via",
    "answer",
    "apply_rport",
    "authorization_header",
    "compute_response",
    "encode_multipart",
    "find_part",
    "ha1",
    "is_keepalive",
    "make_response",
    "parse_authorization",
    "parse_challenge",
    "parse_crypto",
    "parse_cseq",
    "parse_message",
    "parse_multipart",
    "parse_name_addr",
    "parse_recording_metadata",
    "parse_uri",
    "parse_via",
    "require_supported",
]
