"""SDP (RFC 4566/8866) and the offer/answer rules (RFC 3264) for a recording endpoint.

The ingest node only ever *answers*: a PBX or SIPREC client offers, we accept G.711 audio
(PCMU/PCMA, plus RFC 4733 telephone-event so DTMF can be detected) over RTP/AVP or SDES
RTP/SAVP, and reject everything else stream by stream (port 0) so the call survives an offered
video or T.38 line. Unknown SDP lines are preserved on parse and written back on serialize,
because a re-INVITE answer or a debugging dump must not silently drop what the peer said.

Crypto attributes carry key material: their ``repr``/``str`` never show it (the design rule that
secrets are never logged), only :meth:`CryptoAttribute.sdp_value` does, for the wire.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from sip_ingest.sip.errors import SipError, SipParseError

__all__ = [
    "DIRECTIONS",
    "Connection",
    "CryptoAttribute",
    "MediaDescription",
    "NegotiatedMedia",
    "Origin",
    "RtpMap",
    "SessionDescription",
    "answer",
    "parse_crypto",
]

DIRECTIONS: Final = ("sendrecv", "sendonly", "recvonly", "inactive")
_MIRROR: Final = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}
#: Static RTP/AVP payload types we can take without an rtpmap (RFC 3551).
_STATIC_PT: Final = {"0": ("PCMU", 8000), "8": ("PCMA", 8000)}
_CODECS: Final = ("PCMU", "PCMA")
SRTP_SUITE: Final = "AES_CM_128_HMAC_SHA1_80"
#: SDES suites (RFC 4568, RFC 6188) -> (key length, salt length) in bytes.
_SUITES: Final = {
    "AES_CM_128_HMAC_SHA1_80": (16, 14),
    "AES_CM_128_HMAC_SHA1_32": (16, 14),
    "F8_128_HMAC_SHA1_80": (16, 14),
    "AES_192_CM_HMAC_SHA1_80": (24, 14),
    "AES_192_CM_HMAC_SHA1_32": (24, 14),
    "AES_256_CM_HMAC_SHA1_80": (32, 14),
    "AES_256_CM_HMAC_SHA1_32": (32, 14),
}
_MAX_MEDIA: Final = 32
_MAX_LINES: Final = 4096
_SESSION_ORDER: Final = {"i": 1, "u": 2, "e": 3, "p": 4, "z": 8, "k": 9}
_MEDIA_ORDER: Final = {"i": 1, "k": 4}


def _digits(text: str, max_len: int = 10) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts '¹' and '٣', which ``int`` rejects."""
    return 0 < len(text) <= max_len and text.isascii() and text.isdigit()


def _bad(message: str) -> SipParseError:
    return SipParseError(f"SDP: {message}")


# --------------------------------------------------------------------------------------------
# SDES crypto attribute (RFC 4568)


@dataclass(frozen=True, slots=True, repr=False)
class CryptoAttribute:
    """One ``a=crypto`` line. ``key``/``salt`` are the SRTP master key and salt."""

    tag: int
    suite: str
    key: bytes
    salt: bytes
    lifetime: int | None = None
    #: (MKI value, MKI length in bytes) when the line carries one.
    mki: tuple[int, int] | None = None
    session_params: tuple[str, ...] = ()

    @property
    def key_salt(self) -> bytes:
        """Concatenated master key and salt, as SRTP libraries take it."""
        return self.key + self.salt

    def sdp_value(self) -> str:
        """The attribute value for the wire (this is the only place the key is rendered)."""
        info = base64.b64encode(self.key + self.salt).decode("ascii")
        if self.lifetime is not None:
            info += f"|{self.lifetime}"
        if self.mki is not None:
            info += f"|{self.mki[0]}:{self.mki[1]}"
        tail = "".join(" " + p for p in self.session_params)
        return f"{self.tag} {self.suite} inline:{info}{tail}"

    def __repr__(self) -> str:
        return f"CryptoAttribute(tag={self.tag}, suite={self.suite!r}, key=<redacted>)"

    __str__ = __repr__


def parse_crypto(value: str) -> CryptoAttribute:
    """Parse an ``a=crypto`` value; unknown suites and bad keys raise SipParseError."""
    parts = value.split()
    if len(parts) < 3:
        raise _bad("crypto attribute needs tag, suite and key parameters")
    tag_text, suite, key_params, *session_params = parts
    if not _digits(tag_text, 9):
        raise _bad("crypto tag must be 1-9 digits")
    lengths = _SUITES.get(suite)
    if lengths is None:
        raise _bad(f"unknown crypto suite {suite[:40]!r}")
    # Several key parameters (joined by ';') are only meaningful with MKIs; we take the first.
    first = key_params.split(";", 1)[0]
    method, colon, info = first.partition(":")
    if not colon or method.lower() != "inline":
        raise _bad("crypto key method must be inline")
    fields = info.split("|")
    if len(fields) > 3:
        raise _bad("malformed crypto key info")
    encoded = fields[0]
    encoded += "=" * (-len(encoded) % 4)
    try:
        material = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("crypto key is not base64") from None
    key_len, salt_len = lengths
    if len(material) != key_len + salt_len:
        raise _bad(f"{suite} needs {key_len + salt_len} bytes of key and salt")
    lifetime = None
    mki = None
    for extra in fields[1:]:
        if ":" in extra:
            if mki is not None:
                raise _bad("two MKIs in one crypto key")
            mki_value, _, mki_length = extra.partition(":")
            if not (_digits(mki_value) and _digits(mki_length)) or not 1 <= int(mki_length) <= 128:
                raise _bad("malformed crypto MKI")
            mki = (int(mki_value), int(mki_length))
        else:
            if lifetime is not None:
                raise _bad("two lifetimes in one crypto key")
            lifetime = _lifetime(extra)
    return CryptoAttribute(
        int(tag_text),
        suite,
        material[:key_len],
        material[key_len:],
        lifetime,
        mki,
        tuple(session_params),
    )


def _lifetime(text: str) -> int:
    if text.startswith("2^") and _digits(text[2:], 2) and int(text[2:]) <= 64:
        return 2 ** int(text[2:])
    if _digits(text, 20):
        return int(text)
    raise _bad("malformed crypto lifetime")


# --------------------------------------------------------------------------------------------
# Session and media descriptions


@dataclass(slots=True)
class Origin:
    username: str
    sess_id: str
    sess_version: int
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "127.0.0.1"

    @classmethod
    def parse(cls, value: str) -> Origin:
        parts = value.split()
        if len(parts) != 6 or not _digits(parts[2], 20):
            raise _bad("malformed o= line")
        return cls(parts[0], parts[1], int(parts[2]), parts[3], parts[4], parts[5])

    def __str__(self) -> str:
        return (
            f"{self.username} {self.sess_id} {self.sess_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(slots=True)
class Connection:
    nettype: str
    addrtype: str
    #: The connection-address as written (may carry ``/ttl`` for multicast).
    address: str

    @classmethod
    def parse(cls, value: str) -> Connection:
        parts = value.split()
        if len(parts) != 3:
            raise _bad("malformed c= line")
        return cls(*parts)

    @property
    def host(self) -> str:
        return self.address.split("/", 1)[0]

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


class RtpMap(NamedTuple):
    encoding: str
    clock_rate: int
    channels: int | None


Attribute = tuple[str, str | None]


def _attr_get(attributes: list[Attribute], name: str) -> str | None:
    for attr_name, value in attributes:
        if attr_name == name:
            return "" if value is None else value
    return None


def _direction(attributes: list[Attribute]) -> str | None:
    for name, _ in attributes:
        if name in DIRECTIONS:
            return name
    return None


@dataclass(slots=True)
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: list[str]
    attributes: list[Attribute] = field(default_factory=list)
    connection: Connection | None = None
    bandwidths: list[str] = field(default_factory=list)
    port_count: int | None = None
    #: Lines we do not model (i=, k=, unknown types), in order: (type letter, value).
    other: list[tuple[str, str]] = field(default_factory=list)

    def attribute(self, name: str) -> str | None:
        """First value of ``a=name``; ``""`` for a flag attribute, ``None`` if absent."""
        return _attr_get(self.attributes, name)

    def attributes_named(self, name: str) -> list[str]:
        return ["" if v is None else v for n, v in self.attributes if n == name]

    def rtpmap(self, payload_type: str | int) -> RtpMap | None:
        prefix = f"{payload_type} "
        for value in self.attributes_named("rtpmap"):
            if value.startswith(prefix):
                spec = value[len(prefix) :].strip().split("/")
                if len(spec) < 2 or not _digits(spec[1]):
                    return None
                channels = int(spec[2]) if len(spec) > 2 and _digits(spec[2]) else None
                return RtpMap(spec[0], int(spec[1]), channels)
        return None

    def fmtp(self, payload_type: str | int) -> str | None:
        prefix = f"{payload_type} "
        for value in self.attributes_named("fmtp"):
            if value.startswith(prefix):
                return value[len(prefix) :].strip()
        return None

    @property
    def direction(self) -> str | None:
        """Media-level direction attribute, ``None`` if the line has none."""
        return _direction(self.attributes)

    @property
    def label(self) -> str | None:
        """``a=label`` (RFC 4574): how SIPREC metadata names this stream."""
        return self.attribute("label")

    @property
    def crypto(self) -> list[CryptoAttribute]:
        """Valid ``a=crypto`` lines in offer order; unparseable ones are skipped."""
        out = []
        for value in self.attributes_named("crypto"):
            try:
                out.append(parse_crypto(value))
            except SipParseError:
                continue
        return out

    def lines(self) -> list[str]:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        out = [f"m={' '.join([self.media, port, self.proto, *self.formats])}"]
        extras = sorted(self.other, key=lambda item: _MEDIA_ORDER.get(item[0], 9))
        out.extend(f"{t}={v}" for t, v in extras if _MEDIA_ORDER.get(t, 9) < 2)
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out.extend(f"b={b}" for b in self.bandwidths)
        out.extend(f"{t}={v}" for t, v in extras if 2 <= _MEDIA_ORDER.get(t, 9) < 9)
        out.extend(f"a={n}" if v is None else f"a={n}:{v}" for n, v in self.attributes)
        out.extend(f"{t}={v}" for t, v in extras if _MEDIA_ORDER.get(t, 9) >= 9)
        return out


@dataclass(slots=True)
class SessionDescription:
    origin: Origin
    session_name: str = "-"
    connection: Connection | None = None
    #: t= and r= lines in order, as (type letter, value).
    timing: list[tuple[str, str]] = field(default_factory=lambda: [("t", "0 0")])
    bandwidths: list[str] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    other: list[tuple[str, str]] = field(default_factory=list)
    version: int = 0

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        if isinstance(data, bytes | bytearray):
            try:
                text = bytes(data).decode("utf-8")
            except UnicodeDecodeError:
                text = bytes(data).decode("latin-1")
        else:
            text = data
        lines = [line for line in text.replace("\r\n", "\n").split("\n") if line]
        if len(lines) > _MAX_LINES:
            raise _bad("too many lines")
        # RFC 4566 text excludes NUL and CR; a stray CR in, say, a label we echo would let the
        # offerer splice lines into our answer.
        if "\r" in text.replace("\r\n", "") or "\x00" in text:
            raise _bad("NUL or bare CR in the description")
        if not lines or lines[0].rstrip() != "v=0":
            raise _bad("must start with v=0")
        origin: Origin | None = None
        session = cls(Origin("-", "0", 0), timing=[])
        current: MediaDescription | None = None
        for line in lines[1:]:
            kind, eq, value = line.partition("=")
            if len(kind) != 1 or not eq or not "a" <= kind <= "z":
                raise _bad(f"malformed line {line[:40]!r}")
            value = value.rstrip(" \t")
            if kind == "m":
                if len(session.media) >= _MAX_MEDIA:
                    raise _bad("too many m= lines")
                current = _parse_m(value)
                session.media.append(current)
            elif current is not None:
                _media_line(current, kind, value)
            elif kind == "o":
                origin = Origin.parse(value)
            elif kind == "s":
                session.session_name = value
            elif kind == "c":
                session.connection = Connection.parse(value)
            elif kind in "tr":
                session.timing.append((kind, value))
            elif kind == "b":
                session.bandwidths.append(value)
            elif kind == "a":
                session.attributes.append(_attribute(value))
            elif kind == "v":
                raise _bad("second v= line")
            else:
                session.other.append((kind, value))
        if origin is None:
            raise _bad("missing o= line")
        session.origin = origin
        return session

    @property
    def direction(self) -> str | None:
        """Session-level direction attribute, ``None`` if absent."""
        return _direction(self.attributes)

    def media_direction(self, media: MediaDescription) -> str:
        """Effective direction of a stream: media level, else session level, else sendrecv."""
        return media.direction or self.direction or "sendrecv"

    def media_connection(self, media: MediaDescription) -> Connection | None:
        return media.connection or self.connection

    def lines(self) -> list[str]:
        out = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name}"]
        extras = sorted(self.other, key=lambda item: _SESSION_ORDER.get(item[0], 11))
        out.extend(f"{t}={v}" for t, v in extras if _SESSION_ORDER.get(t, 11) < 5)
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out.extend(f"b={b}" for b in self.bandwidths)
        out.extend(f"{t}={v}" for t, v in self.timing or [("t", "0 0")])
        out.extend(f"{t}={v}" for t, v in extras if 5 <= _SESSION_ORDER.get(t, 11) < 10)
        out.extend(f"a={n}" if v is None else f"a={n}:{v}" for n, v in self.attributes)
        out.extend(f"{t}={v}" for t, v in extras if _SESSION_ORDER.get(t, 11) >= 10)
        for media in self.media:
            out.extend(media.lines())
        return out

    def __str__(self) -> str:
        return "\r\n".join(self.lines()) + "\r\n"

    def to_bytes(self) -> bytes:
        return str(self).encode("utf-8")

    def __bytes__(self) -> bytes:
        return self.to_bytes()


def _attribute(value: str) -> Attribute:
    name, colon, rest = value.partition(":")
    if not name:
        raise _bad("empty attribute name")
    return (name, rest if colon else None)


def _parse_m(value: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 3:
        raise _bad("malformed m= line")
    media, port_text, proto, *formats = parts
    port_text, slash, count_text = port_text.partition("/")
    if not _digits(port_text, 5) or int(port_text) > 65535:
        raise _bad("invalid media port")
    count = None
    if slash:
        if not _digits(count_text, 5):
            raise _bad("invalid media port count")
        count = int(count_text)
    return MediaDescription(media, int(port_text), proto, formats, port_count=count)


def _media_line(media: MediaDescription, kind: str, value: str) -> None:
    if kind == "a":
        media.attributes.append(_attribute(value))
    elif kind == "c":
        media.connection = Connection.parse(value)
    elif kind == "b":
        media.bandwidths.append(value)
    else:
        media.other.append((kind, value))


# --------------------------------------------------------------------------------------------
# Offer/answer


@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    """One accepted audio stream: what the media layer needs to receive (and decrypt) it."""

    #: Index of the m= line in the offer (and the answer).
    index: int
    #: ``a=label`` of the offered stream (SIPREC names streams by label), if any.
    label: str | None
    codec: str
    payload_type: int
    dtmf_payload_type: int | None
    #: Where the peer receives (and, symmetric RTP, sends from): (host, port).
    remote_addr: tuple[str, int]
    local_port: int
    srtp_remote: CryptoAttribute | None
    srtp_local: CryptoAttribute | None
    #: Our direction, as written in the answer.
    direction: str
    ptime: int | None = None


def _random_key() -> bytes:
    return secrets.token_bytes(30)


def _rejected(offered: MediaDescription) -> MediaDescription:
    # RFC 3264 6: port 0, and the line still lists at least one format.
    return MediaDescription(offered.media, 0, offered.proto, list(offered.formats) or ["0"])


def _payload_type(fmt: str) -> bool:
    return _digits(fmt, 3) and int(fmt) < 128


def _pick_codec(offered: MediaDescription) -> tuple[str, int] | None:
    for fmt in offered.formats:
        if not _payload_type(fmt):
            continue
        rtpmap = offered.rtpmap(fmt)
        if rtpmap is not None:
            name = rtpmap.encoding.upper()
            if name in _CODECS and rtpmap.clock_rate == 8000 and rtpmap.channels in (None, 1):
                return name, int(fmt)
        elif fmt in _STATIC_PT:
            return _STATIC_PT[fmt][0], int(fmt)
    return None


def _pick_dtmf(offered: MediaDescription) -> int | None:
    for fmt in offered.formats:
        rtpmap = offered.rtpmap(fmt)
        if (
            rtpmap is not None
            and rtpmap.encoding.lower() == "telephone-event"
            and rtpmap.clock_rate == 8000
            and _payload_type(fmt)
        ):
            return int(fmt)
    return None


def _pick_crypto(offered: MediaDescription) -> CryptoAttribute | None:
    for crypto in offered.crypto:
        # MKIs and session parameters (UNENCRYPTED_SRTP, KDR, FEC, ...) change the SRTP
        # context in ways our receive path does not implement: skip such lines.
        if crypto.suite == SRTP_SUITE and crypto.mki is None and not crypto.session_params:
            return crypto
    return None


def answer(
    offer: SessionDescription,
    *,
    local_ip: str,
    ports: list[int],
    srtp_key_factory: Callable[[], bytes] | None = None,
    origin: Origin | None = None,
    session_name: str = "callvault",
) -> tuple[SessionDescription, list[NegotiatedMedia]]:
    """Answer an offer as a receive-side endpoint.

    ``ports`` has one local RTP port per *audio* m-line of the offer, in order (0 rejects that
    stream). ``srtp_key_factory`` returns 30 fresh bytes (key || salt) per SRTP stream; the
    default draws them from :mod:`secrets`.
    ``origin`` is the o= of our previous answer in this dialog: the answer then keeps its
    session id and increments its version (RFC 3264 8); without it a new session id is drawn.

    Per audio stream the first of PCMU/PCMA in the offerer's preference order is chosen,
    telephone-event/8000 is kept if offered, RTP/SAVP needs an AES_CM_128_HMAC_SHA1_80 crypto
    line (answered with our own key under the same tag), and direction is mirrored. Anything
    else is rejected with port 0. No acceptable stream at all raises SipError 488.
    """
    key_factory = srtp_key_factory or _random_key
    audio_count = sum(1 for m in offer.media if m.media == "audio")
    if len(ports) != audio_count:
        raise ValueError(f"ports has {len(ports)} entries for {audio_count} audio m-lines")
    addrtype = "IP6" if ":" in local_ip else "IP4"
    if origin is None:
        origin = Origin("callvault", str(secrets.randbits(62)), 1, "IN", addrtype, local_ip)
    else:
        origin = Origin(
            origin.username, origin.sess_id, origin.sess_version + 1, "IN", addrtype, local_ip
        )
    timing = [item for item in offer.timing if item[0] == "t"][:1] or [("t", "0 0")]
    result = SessionDescription(
        origin,
        session_name,
        Connection("IN", addrtype, local_ip),
        timing=list(timing),
    )
    negotiated: list[NegotiatedMedia] = []
    reasons: list[str] = []
    audio_index = -1
    for index, offered in enumerate(offer.media):
        if offered.media == "audio":
            audio_index += 1
        outcome: tuple[MediaDescription, NegotiatedMedia] | str
        if offered.media != "audio":
            outcome = f"{offered.media} is not recorded"
        elif offered.port == 0:
            outcome = "rejected by the offerer"
        elif ports[audio_index] == 0:
            outcome = "no local port"
        else:
            outcome = _accept_audio(offer, index, offered, ports[audio_index], key_factory)
        if isinstance(outcome, str):
            reasons.append(f"m-line {index}: {outcome}")
            result.media.append(_rejected(offered))
        else:
            result.media.append(outcome[0])
            negotiated.append(outcome[1])
    if not negotiated:
        raise SipError(
            "no acceptable audio stream in the offer: " + "; ".join(reasons or ["no m-lines"]),
            status=488,
        )
    return result, negotiated


def _accept_audio(
    offer: SessionDescription,
    index: int,
    offered: MediaDescription,
    local_port: int,
    srtp_key_factory: Callable[[], bytes],
) -> tuple[MediaDescription, NegotiatedMedia] | str:
    proto = offered.proto.upper()
    if proto not in ("RTP/AVP", "RTP/SAVP"):
        return f"transport {offered.proto} not supported"
    codec = _pick_codec(offered)
    if codec is None:
        return "no PCMU or PCMA offered"
    connection = offer.media_connection(offered)
    if connection is None:
        return "no c= line"
    remote_crypto = local_crypto = None
    if proto == "RTP/SAVP":
        remote_crypto = _pick_crypto(offered)
        if remote_crypto is None:
            return f"no usable {SRTP_SUITE} crypto line"
        material = srtp_key_factory()
        if len(material) != 30:
            raise ValueError("srtp_key_factory must return 30 bytes (16 key + 14 salt)")
        local_crypto = CryptoAttribute(remote_crypto.tag, SRTP_SUITE, material[:16], material[16:])
    name, pt = codec
    dtmf = _pick_dtmf(offered)
    direction = _MIRROR[offer.media_direction(offered)]
    formats = [str(pt)] + ([str(dtmf)] if dtmf is not None else [])
    attributes: list[Attribute] = [("rtpmap", f"{pt} {name}/8000")]
    if dtmf is not None:
        attributes.append(("rtpmap", f"{dtmf} telephone-event/8000"))
        attributes.append(("fmtp", f"{dtmf} {offered.fmtp(dtmf) or '0-16'}"))
    ptime_text = offered.attribute("ptime")
    ptime = int(ptime_text) if ptime_text and _digits(ptime_text, 4) else None
    if ptime is not None:
        attributes.append(("ptime", str(ptime)))
    label = offered.label
    if label is not None:
        attributes.append(("label", label))
    if local_crypto is not None:
        attributes.append(("crypto", local_crypto.sdp_value()))
    attributes.append((direction, None))
    media = MediaDescription("audio", local_port, offered.proto, formats, attributes)
    info = NegotiatedMedia(
        index=index,
        label=label,
        codec=name,
        payload_type=pt,
        dtmf_payload_type=dtmf,
        remote_addr=(connection.host, offered.port),
        local_port=local_port,
        srtp_remote=remote_crypto,
        srtp_local=local_crypto,
        direction=direction,
        ptime=ptime,
    )
    return media, info
