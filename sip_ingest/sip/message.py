"""SIP messages (RFC 3261 sections 7, 19, 20 and 25): parse, inspect, build, serialize.

Written for a UAS on the signalling hot path that receives hostile input:

* Everything the transaction and dialog layers need (start line, top Via, From, To, Call-ID,
  CSeq, Content-Length) is validated in :func:`parse_message`, so a malformed request fails here
  with a :class:`SipParseError` that still carries enough of the message to answer 400, instead
  of surfacing later as an ``AttributeError`` deep inside call handling.
* Everything else stays a string until asked for: unknown headers are never parsed, and the
  parsed views (:func:`parse_via`, :func:`parse_name_addr`, :class:`SipUri`) are cheap, regex
  driven and linear in their input (no nested quantifiers that could backtrack explosively).
* Hard limits bound the work per message (size, header count, line length) before any parsing.
* Header lines are CRLF-terminated as RFC 3261 requires; a bare CR or LF is rejected rather than
  guessed at, because a lone LF smuggled into a value would otherwise be echoed into our
  responses (header injection).

The header section is decoded as UTF-8 (RFC 3261 TEXT-UTF8); if that fails it is decoded as
Latin-1 instead of being rejected, because some PBXes still send Latin-1 display names, Latin-1
is what those bytes almost always are, and the result is a valid ``str`` that every later stage
(logging, Avro) can encode.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, NamedTuple, TypeAlias, TypeVar, cast

from sip_ingest.sip.errors import SipError, SipParseError, UnsupportedExtension

__all__ = [
    "MAX_DATAGRAM",
    "MAX_HEADERS",
    "MAX_HEADER_BYTES",
    "MAX_LINE",
    "MAX_STREAM_BODY",
    "PING",
    "REASONS",
    "AbsoluteUri",
    "CSeq",
    "Headers",
    "KeepalivePing",
    "NameAddr",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "SipUri",
    "StreamFramer",
    "Via",
    "apply_rport",
    "is_keepalive",
    "make_response",
    "parse_cseq",
    "parse_header_block",
    "parse_message",
    "parse_name_addr",
    "parse_uri",
    "parse_via",
    "require_supported",
    "split_header_list",
]

#: A UDP datagram cannot be larger; anything claiming to be is not one datagram.
MAX_DATAGRAM: Final = 65_535
#: Header section (start line included). Real INVITEs are 1-3 KiB; 16 KiB leaves room for
#: STIR/SHAKEN Identity headers and long Route sets while capping per-message work.
MAX_HEADER_BYTES: Final = 16 * 1024
#: Header fields after comma-splitting (a Via list of 5 hops counts 5).
MAX_HEADERS: Final = 100
#: One logical (unfolded) header line or start line.
MAX_LINE: Final = 8 * 1024
#: Body cap on streams. SIPREC INVITEs carry multipart SDP + rs-metadata XML; 512 KiB is far
#: above any real one and small enough that a slow-loris peer cannot pin much memory.
MAX_STREAM_BODY: Final = 512 * 1024

_T = TypeVar("_T")
_MAX_CSEQ: Final = 2**31 - 1  # RFC 3261 8.1.1.5: "MUST be less than 2**31"

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"  # noqa: S105 - RFC 3261 token, not a secret
_TOKEN_RE: Final = re.compile(_TOKEN)
_SCHEME_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*):")
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_UNESCAPE_RE: Final = re.compile(r"\\(.)", re.S)
_PARAM_VALUE = r"(?:" + _QUOTED + r"|[A-Za-z0-9\-.!%*_+`'~:\[\]]+)"
#: A generic parameter: ``; name [= token/host/quoted-string]`` with SWS around separators.
_PARAM_RE: Final = re.compile(
    r"[ \t]*;[ \t]*(" + _TOKEN + r")(?:[ \t]*=[ \t]*(" + _PARAM_VALUE + r"))?", re.S
)
#: The whole parameter list; validated in one call, then extracted with ``_PARAM_RE.findall``.
_PARAMS_RE: Final = re.compile(
    r"(?:[ \t]*;[ \t]*" + _TOKEN + r"(?:[ \t]*=[ \t]*" + _PARAM_VALUE + r")?)*[ \t]*", re.S
)
_GENERIC_URI_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:[^\s<>\"\x00-\x1f\x7f]*")
_FOLD_RE: Final = re.compile(r"\r\n[ \t]+")
_DIGITS_RE: Final = re.compile(r"[0-9]{1,10}")

_COMPACT: Final = {
    "i": "call-id",
    "f": "from",
    "t": "to",
    "v": "via",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
    "s": "subject",
    "e": "content-encoding",
    "o": "event",
    "r": "refer-to",
    "x": "session-expires",
    "u": "allow-events",
    "b": "referred-by",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "y": "identity",
    "n": "identity-info",
}

_CANONICAL_NAMES = [
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-ID",
    "Content-Language",
    "Content-Length",
    "Content-Transfer-Encoding",
    "Content-Type",
    "CSeq",
    "Date",
    "Diversion",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "History-Info",
    "Identity",
    "Identity-Info",
    "In-Reply-To",
    "Max-Forwards",
    "MIME-Version",
    "Min-Expires",
    "Min-SE",
    "Organization",
    "P-Asserted-Identity",
    "P-Charging-Vector",
    "P-Preferred-Identity",
    "Priority",
    "Privacy",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Remote-Party-ID",
    "Replaces",
    "Reply-To",
    "Request-Disposition",
    "Require",
    "Retry-After",
    "Route",
    "RSeq",
    "Server",
    "Session-Expires",
    "Session-ID",
    "Subject",
    "Subscription-State",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
]
_CANONICAL: Final = {n.lower(): n for n in _CANONICAL_NAMES}
#: Raw header name -> (lookup key, name to write). Only names of known headers are cached, so a
#: peer sending endless distinct header names cannot grow it.
_NAME_CACHE: dict[str, tuple[str, str]] = {}


def _seed_name_cache() -> None:
    for key, canon in _CANONICAL.items():
        _NAME_CACHE[canon] = (key, canon)
        _NAME_CACHE[key] = (key, canon)
    for short, key in _COMPACT.items():
        info = (key, _CANONICAL.get(key, key))
        _NAME_CACHE[short] = info
        _NAME_CACHE[short.upper()] = info


_seed_name_cache()

#: Headers whose values are comma-separated lists of addresses; split on parse so each hop or
#: contact is its own entry (RFC 3261 7.3.1 makes the two spellings equivalent).
_SPLIT_ON_PARSE: Final = frozenset({"via", "route", "record-route", "contact"})
#: Headers that may appear once; a second copy makes the message ambiguous (RFC 4475 mcl01,
#: multi01), so it is rejected.
_SINGLETONS: Final = frozenset(
    {"call-id", "cseq", "from", "to", "content-length", "content-type", "max-forwards"}
)

REASONS: Final[dict[int, str]] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    433: "Anonymity Disallowed",
    436: "Bad Identity-Info",
    437: "Unsupported Certificate",
    438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded",
    469: "Bad Info Package",
    470: "Consent Needed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
    608: "Rejected",
}


def _short(text: str, limit: int = 40) -> str:
    """Quote hostile input in error messages without letting it flood logs."""
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def _name_info(name: str) -> tuple[str, str]:
    """(lookup key, name to write) for a header name; validates unknown names as tokens."""
    info = _NAME_CACHE.get(name)
    if info is not None:
        return info
    if not _TOKEN_RE.fullmatch(name):
        raise SipParseError(f"invalid header name {_short(name)}")
    key = name.lower()
    key = _COMPACT.get(key, key)
    canon = _CANONICAL.get(key)
    if canon is not None:
        if len(_NAME_CACHE) < 2048:
            _NAME_CACHE[name] = (key, canon)
        return key, canon
    return key, name


def _key(name: str) -> str:
    info = _NAME_CACHE.get(name)
    if info is not None:
        return info[0]
    key = name.lower()
    return _COMPACT.get(key, key)


# --------------------------------------------------------------------------------------------
# Headers


class Headers:
    """Ordered, case-insensitive multi-dict of header fields.

    Names are matched case-insensitively and compact forms are expanded (``v`` is ``Via``), so
    callers never care how a peer spelled a header. Known headers are written back under their
    canonical spelling; unknown ones as received. Values are kept verbatim (after unfolding):
    responses must echo Via/From/To/Call-ID/CSeq exactly as the peer sent them.
    """

    __slots__ = ("_items",)

    def __init__(
        self, items: Mapping[str, str] | Iterable[tuple[str, str]] | Headers | None = None
    ) -> None:
        #: (lookup key, name to write, value)
        self._items: list[tuple[str, str, str]] = []
        if items is None:
            return
        if isinstance(items, Headers):
            self._items = list(items._items)
            return
        pairs = items.items() if isinstance(items, Mapping) else items
        for name, value in pairs:
            self.add(name, value)

    @staticmethod
    def _checked(value: str) -> str:
        # A CR or LF in a value would end the header line early on the wire: refuse to build
        # messages an attacker could splice headers into.
        if "\r" in value or "\n" in value:
            raise ValueError("header values must not contain CR or LF")
        return value

    def add(self, name: str, value: str) -> None:
        """Append a field (after any existing fields of the same name)."""
        key, written = _name_info(name)
        self._items.append((key, written, self._checked(value)))

    def prepend(self, name: str, value: str) -> None:
        """Insert a field before all others (a UAC adds its own Via on top)."""
        key, written = _name_info(name)
        self._items.insert(0, (key, written, self._checked(value)))

    def set(self, name: str, value: str) -> None:
        """Replace every field of this name by one, at the position of the first."""
        key, written = _name_info(name)
        value = self._checked(value)
        items = self._items
        for i, item in enumerate(items):
            if item[0] == key:
                items[i] = (key, written, value)
                self._items = items[: i + 1] + [it for it in items[i + 1 :] if it[0] != key]
                return
        items.append((key, written, value))

    def replace_first(self, name: str, value: str) -> None:
        """Replace the first field of this name, keeping the others (rewrite the top Via)."""
        key, _ = _name_info(name)
        value = self._checked(value)
        for i, item in enumerate(self._items):
            if item[0] == key:
                self._items[i] = (key, item[1], value)
                return
        raise KeyError(name)

    def remove(self, name: str) -> int:
        """Remove every field of this name; returns how many were removed."""
        key = _key(name)
        before = len(self._items)
        self._items = [it for it in self._items if it[0] != key]
        return before - len(self._items)

    def get(self, name: str, default: str | None = None) -> str | None:
        """First value of ``name``."""
        key = _key(name)
        for item in self._items:
            if item[0] == key:
                return item[2]
        return default

    def get_all(self, name: str) -> list[str]:
        key = _key(name)
        return [item[2] for item in self._items if item[0] == key]

    def get_int(self, name: str, default: int | None = None) -> int | None:
        """First value as a non-negative integer (at most 10 digits); SipParseError otherwise."""
        value = self.get(name)
        if value is None:
            return default
        value = value.strip(" \t")
        if not _DIGITS_RE.fullmatch(value):
            raise SipParseError(f"{name} is not a small non-negative integer: {_short(value)}")
        return int(value)

    def get_list(self, name: str) -> list[str]:
        """All comma-separated elements of every field of ``name`` (Supported, Require, Allow)."""
        out: list[str] = []
        for value in self.get_all(name):
            out.extend(e for e in split_header_list(value) if e)
        return out

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _key(name)
        return any(item[0] == key for item in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((item[1], item[2]) for item in self._items)

    def items(self) -> list[tuple[str, str]]:
        return [(item[1], item[2]) for item in self._items]

    def __len__(self) -> int:
        return len(self._items)

    def copy(self) -> Headers:
        return Headers(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


def split_header_list(value: str) -> list[str]:
    """Split a comma-separated header value, respecting quoted strings and ``<...>`` URIs.

    Empty elements (``a,,b`` or a trailing comma) are returned as ``""`` so that callers that
    require well-formed lists (Via) can reject them; unterminated quotes or brackets raise.
    """
    if "," not in value:
        return [value.strip(" \t")]
    out: list[str] = []
    n = len(value)
    i = 0
    start = 0
    while i < n:
        ch = value[i]
        if ch == ",":
            out.append(value[start:i].strip(" \t"))
            start = i + 1
        elif ch == '"':
            i += 1
            while i < n and value[i] != '"':
                i += 2 if value[i] == "\\" else 1
            if i >= n:
                raise SipParseError(f"unterminated quoted string in {_short(value)}")
        elif ch == "<":
            end = value.find(">", i)
            if end < 0:
                raise SipParseError(f"unterminated '<' in {_short(value)}")
            i = end
        i += 1
    out.append(value[start:].strip(" \t"))
    return out


# --------------------------------------------------------------------------------------------
# URIs, addresses, Via, CSeq


_SIP_URI_RE: Final = re.compile(
    r"(?P<scheme>[Ss][Ii][Pp][Ss]?):"
    r"(?:(?P<user>[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+)(?::[A-Za-z0-9\-_.!~*'()&=+$,%]*)?@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-_.]+)"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<params>(?:;[A-Za-z0-9\-_.!~*'()\[\]/:&+$%=]*)*)"
    r"(?:\?(?P<headers>[A-Za-z0-9\-_.!~*'()\[\]/?:+$%=&]*))?"
)
_TEL_URI_RE: Final = re.compile(
    r"(?P<scheme>[Tt][Ee][Ll]):(?P<user>[0-9A-Fa-f*#+\-.()pPwW]+)"
    r"(?P<params>(?:;[A-Za-z0-9\-_.!~*'()\[\]/:&+$%=]*)*)"
)


@dataclass(slots=True)
class SipUri:
    """A ``sip:``, ``sips:`` or ``tel:`` URI (RFC 3261 19.1, RFC 3966).

    Components keep their %-escapes (RFC 3261 19.1.2: unescaping is the application's job and
    never recursive). A password in the userinfo is parsed and dropped: RFC 3261 19.1.1 calls
    it NOT RECOMMENDED, and not keeping it means it cannot leak into logs or metadata. For
    ``tel:`` URIs the number is in ``user`` and ``host`` is empty.
    """

    scheme: str
    user: str | None
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> SipUri:
        m = _SIP_URI_RE.fullmatch(text)
        if m is None:
            t = _TEL_URI_RE.fullmatch(text)
            if t is None:
                raise SipParseError(f"not a sip/sips/tel URI: {_short(text)}")
            return cls("tel", t["user"], "", None, _uri_params(t["params"], text))
        scheme, user, host, port_text, params_text, headers_text = m.groups()
        port = None
        if port_text is not None:
            port = int(port_text)
            if not 0 < port <= 65535:
                raise SipParseError(f"port out of range in {_short(text)}")
        headers: dict[str, str] = {}
        if headers_text:
            for part in headers_text.split("&"):
                name, eq, value = part.partition("=")
                if not name or not eq:
                    raise SipParseError(f"malformed URI header in {_short(text)}")
                headers[name] = value
        params = _uri_params(params_text, text) if params_text else {}
        return cls(scheme.lower(), user, host, port, params, headers)

    @property
    def host_port(self) -> tuple[str, int | None]:
        return self.host, self.port

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.scheme != "tel":
                parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts.append(f":{self.port}")
        for name, value in self.params.items():
            parts.append(f";{name}" if value is None else f";{name}={value}")
        if self.headers:
            parts.append("?" + "&".join(f"{k}={v}" for k, v in self.headers.items()))
        return "".join(parts)


def _uri_params(raw: str, text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for part in raw.split(";")[1:]:
        name, eq, value = part.partition("=")
        if not name:
            raise SipParseError(f"empty URI parameter in {_short(text)}")
        params[name.lower()] = value if eq else None
    return params


def _parse_params(text: str, pos: int) -> dict[str, str | None]:
    """Generic ``;name=value`` parameters from ``pos`` to the end of ``text``."""
    if pos == len(text):
        return {}
    if _PARAMS_RE.fullmatch(text, pos) is None:
        raise SipParseError(f"malformed parameters in {_short(text)}")
    pairs = _PARAM_RE.findall(text, pos)
    # The value group cannot match empty, so "" means "no value".
    params = {name.lower(): value or None for name, value in pairs}
    if len(params) != len(pairs):
        raise SipParseError(f"duplicate parameter in {_short(text)}")
    return params


def _format_params(params: Mapping[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


#: name-addr (quoted or token display name, or none, then <URI>) or a bare addr-spec, whose URI
#: cannot contain ';', ',' or '?' (RFC 3261 20: such URIs must be bracketed).
_NAME_ADDR_RE: Final = re.compile(
    r'[ \t]*(?:(?:"((?:[^"\\]|\\.)*)"|(' + _TOKEN + r"(?:[ \t]+" + _TOKEN + r")*))?"
    r'[ \t]*<([^<>\s"]*)>|([^\s;<>",?]+))',
    re.S,
)


@dataclass(slots=True)
class AbsoluteUri:
    """A URI of a scheme we do not interpret (``isbn:``, ``urn:``, ``http:``), kept verbatim.

    It has the same attributes as :class:`SipUri` (``user`` is None, ``host`` empty) so code
    reading ``name_addr.uri.user`` works whatever the peer put there (RFC 4475 unksm2).
    """

    scheme: str
    opaque: str
    user: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"


Uri: TypeAlias = SipUri | AbsoluteUri


@dataclass(slots=True)
class NameAddr:
    """A ``name-addr`` or ``addr-spec`` with header parameters (From, To, Contact, Route).

    ``display`` is unquoted (escapes resolved), ``None`` if absent. ``uri`` is parsed for
    sip/sips/tel and an :class:`AbsoluteUri` for any other scheme.
    """

    display: str | None
    uri: Uri
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def user(self) -> str | None:
        """The user part of a sip/sips URI or the number of a tel URI (the caller number)."""
        return self.uri.user

    def __str__(self) -> str:
        display = ""
        if self.display is not None:
            escaped = self.display.replace("\\", "\\\\").replace('"', '\\"')
            display = f'"{escaped}" '
        return f"{display}<{self.uri}>{_format_params(self.params)}"


def parse_name_addr(value: str) -> NameAddr:
    """Parse From/To/Contact/Route values; SWS around every separator is accepted (RFC 4475)."""
    if len(value) > MAX_LINE:
        raise SipParseError("address too long")
    m = _NAME_ADDR_RE.match(value)
    if m is None:
        raise SipParseError(f"malformed address {_short(value)}")
    quoted, tokens, bracketed, spec = m.groups()
    if quoted is not None:
        display: str | None = _UNESCAPE_RE.sub(r"\1", quoted) if "\\" in quoted else quoted
    else:
        display = tokens
    uri = bracketed if bracketed is not None else spec
    return NameAddr(display, parse_uri(uri), _parse_params(value, m.end()))


def parse_uri(text: str) -> Uri:
    """SipUri for sip/sips/tel, AbsoluteUri for any other scheme; no scheme is an error."""
    if text.startswith(("sip:", "sips:", "tel:")):
        return SipUri.parse(text)
    scheme = _SCHEME_RE.match(text)
    if scheme is None:
        raise SipParseError(f"URI without a scheme: {_short(text)}")
    if scheme[1].lower() in ("sip", "sips", "tel"):
        return SipUri.parse(text)
    if not _GENERIC_URI_RE.fullmatch(text):
        raise SipParseError(f"invalid URI {_short(text)}")
    return AbsoluteUri(scheme[1].lower(), text[scheme.end() :])


_VIA_RE: Final = re.compile(
    r"[ \t]*(?:SIP|sip|Sip)[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*(" + _TOKEN + r")[ \t]+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-_.]+)(?:[ \t]*:[ \t]*([0-9]{1,5}))?"
)


@dataclass(slots=True)
class Via:
    """One Via hop (RFC 3261 20.42, RFC 3581 rport)."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def has_rport(self) -> bool:
        return "rport" in self.params

    @property
    def rport(self) -> int | None:
        """The filled-in rport value; ``None`` when absent or still empty (see ``has_rport``)."""
        value = self.params.get("rport")
        return int(value) if value is not None and _small_int(value) is not None else None

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"SIP/2.0/{self.transport} {self.host}{port}{_format_params(self.params)}"


def parse_via(value: str) -> Via:
    """Parse one Via value (not a comma list; :class:`Headers` splits those on parse)."""
    m = _VIA_RE.match(value)
    if m is None:
        raise SipParseError(f"malformed Via {_short(value)}")
    port = None
    if m[3] is not None:
        port = int(m[3])
        if not 0 < port <= 65535:
            raise SipParseError(f"Via port out of range in {_short(value)}")
    return Via(m[1].upper(), m[2], port, _parse_params(value, m.end()))


class CSeq(NamedTuple):
    seq: int
    method: str


_CSEQ_RE: Final = re.compile(r"[ \t]*([0-9]{1,10})[ \t]+(" + _TOKEN + r")[ \t]*")


def parse_cseq(value: str) -> CSeq:
    m = _CSEQ_RE.fullmatch(value)
    if m is None:
        raise SipParseError(f"malformed CSeq {_short(value)}")
    seq = int(m[1])
    if seq > _MAX_CSEQ:
        raise SipParseError("CSeq number out of range")
    return CSeq(seq, m[2])


# --------------------------------------------------------------------------------------------
# Messages


class SipMessage:
    """Fields and parsed views shared by requests and responses.

    The parsed views (``via``, ``from_``, ``to``, ``cseq``) are memoised against the header value
    they came from, so they stay correct if the headers are edited (e.g. by :func:`apply_rport`)
    and cost nothing to read repeatedly.
    """

    __slots__ = ("_memo", "body", "headers")

    def __init__(
        self, headers: Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None, body: bytes
    ) -> None:
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body = bytes(body)
        self._memo: dict[str, tuple[str, object]] = {}

    def _parsed(self, name: str, parser: Callable[[str], _T]) -> _T:
        raw = self.headers.get(name)
        if raw is None:
            raise SipParseError(f"missing {_CANONICAL.get(name, name)} header")
        hit = self._memo.get(name)
        if hit is not None and hit[0] is raw:
            return cast(_T, hit[1])
        value = parser(raw)
        self._memo[name] = (raw, value)
        return value

    @property
    def via(self) -> Via:
        """The top Via (the hop the response goes back through)."""
        return self._parsed("via", parse_via)

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.headers.get_all("via")]

    @property
    def from_(self) -> NameAddr:
        return self._parsed("from", parse_name_addr)

    @property
    def to(self) -> NameAddr:
        return self._parsed("to", parse_name_addr)

    @property
    def cseq(self) -> CSeq:
        return self._parsed("cseq", parse_cseq)

    @property
    def call_id(self) -> str:
        value = self.headers.get("call-id")
        if value is None:
            raise SipParseError("missing Call-ID header")
        return value

    @property
    def content_type(self) -> str | None:
        """Media type without parameters, lower-cased (``application/sdp``)."""
        value = self.headers.get("content-type")
        if value is None:
            return None
        return value.split(";", 1)[0].strip(" \t").lower()

    def _start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Wire form; Content-Length is always (re)written from the actual body."""
        lines = [self._start_line()]
        lines.extend(
            f"{name}: {value}"
            for key, name, value in self.headers._items
            if key != "content-length"
        )
        lines.append(f"Content-Length: {len(self.body)}\r\n\r\n")
        return "\r\n".join(lines).encode("utf-8") + self.body

    def __bytes__(self) -> bytes:
        return self.to_bytes()


class SipRequest(SipMessage):
    __slots__ = ("method", "uri")

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        #: The Request-URI as received. See :attr:`request_uri` for its parsed form.
        self.uri = uri

    @property
    def request_uri(self) -> Uri:
        """Parsed Request-URI; an :class:`AbsoluteUri` means a scheme we do not serve (416)."""
        hit = self._memo.get(" ruri")
        if hit is not None and hit[0] is self.uri:
            return cast(Uri, hit[1])
        parsed = parse_uri(self.uri)
        self._memo[" ruri"] = (self.uri, parsed)
        return parsed

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self.uri} call-id={self.headers.get('call-id')!r}>"


class SipResponse(SipMessage):
    __slots__ = ("reason", "status")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        if not 100 <= status <= 699:
            raise ValueError(f"status {status} out of range")
        self.status = status
        self.reason = REASONS.get(status, "Unknown") if reason is None else reason
        if "\r" in self.reason or "\n" in self.reason:
            raise ValueError("reason phrase must not contain CR or LF")

    def _start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason} call-id={self.headers.get('call-id')!r}>"


SipMessageT: TypeAlias = SipRequest | SipResponse


# --------------------------------------------------------------------------------------------
# Parsing


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


_METHODS: Final = frozenset(
    [
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "INFO",
        "UPDATE",
        "PRACK",
        "REGISTER",
        "SUBSCRIBE",
        "NOTIFY",
        "REFER",
        "MESSAGE",
        "PUBLISH",
    ]
)


def parse_header_block(text: str) -> Headers:
    """Header lines (CRLF separated, no start line, no blank line) into :class:`Headers`.

    Also used for MIME part headers. Enforces the line-length and header-count limits and the
    CRLF-only rule; unfolds continuation lines.
    """
    return _scan_headers(text)[0]


def _scan_headers(text: str) -> tuple[Headers, dict[str, str], str | None]:
    """(headers, first value per key, name of a duplicated single-valued header or None)."""
    headers = Headers()
    firsts: dict[str, str] = {}
    if not text:
        return headers, firsts, None
    if "\r\n " in text or "\r\n\t" in text:
        if text[0] in " \t":
            raise SipParseError("header section starts with a continuation line")
        text = _FOLD_RE.sub(" ", text)
    lines = text.split("\r\n")
    if text.count("\r") >= len(lines) or text.count("\n") >= len(lines):
        raise SipParseError("bare CR or LF in header section")
    if len(lines) > MAX_HEADERS:
        raise SipParseError(f"more than {MAX_HEADERS} header fields")
    if len(text) > MAX_LINE and any(len(line) > MAX_LINE for line in lines):
        raise SipParseError("header line too long")
    items = headers._items
    append = items.append
    cache = _NAME_CACHE
    split_keys = _SPLIT_ON_PARSE
    dup = None
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon:
            raise SipParseError(f"header line without colon: {_short(line)}")
        info = cache.get(name)
        if info is None:
            info = _name_info(name.rstrip(" \t"))
        key = info[0]
        value = value.strip(" \t")
        if key in split_keys and "," in value:
            elements = split_header_list(value)
            for element in elements:
                if not element:
                    raise SipParseError(f"empty element in {info[1]} list")
                append((key, info[1], element))
            value = elements[0]  # the memoised views are keyed on this very object
        else:
            append((key, info[1], value))
        if key in firsts:
            if key in _SINGLETONS:
                dup = info[1]
        else:
            firsts[key] = value
    if len(items) > MAX_HEADERS:
        raise SipParseError(f"more than {MAX_HEADERS} header fields")
    return headers, firsts, dup


class _Head(NamedTuple):
    method: str | None  # None for a response
    uri: str
    status: int
    reason: str
    headers: Headers
    content_length: int | None
    firsts: dict[str, str]
    duplicate: str | None


_VERSION_RE: Final = re.compile(r"SIP/[0-9]+\.[0-9]+", re.I)


def _small_int(value: str) -> int | None:
    if len(value) <= 10 and value.isdigit() and value.isascii():
        return int(value)
    return None


def _parse_head(data: bytes | bytearray, start: int, end: int) -> _Head:
    """Start line and headers of ``data[start:end]`` (the part before the blank line)."""
    text = _decode(bytes(data[start:end]))
    first, _, rest = text.partition("\r\n")
    if len(first) > MAX_LINE:
        raise SipParseError("start line too long")
    if "\r" in first or "\n" in first:
        raise SipParseError("bare CR or LF in the start line")
    method: str | None
    if first.startswith("SIP/"):
        version, sp, tail = first.partition(" ")
        code, _, reason = tail.partition(" ")
        if not sp or _small_int(code) is None or len(code) != 3 or not "100" <= code <= "699":
            raise SipParseError(f"malformed status line {_short(first)}")
        if version.upper() != "SIP/2.0":
            raise SipParseError(f"unsupported SIP version {_short(version)}")
        method = None
        uri = ""
        status = int(code)
    else:
        parts = first.split(" ")
        if len(parts) != 3:
            raise SipParseError(f"malformed request line {_short(first)}")
        method, uri, version = parts
        if version != "SIP/2.0" and version.upper() != "SIP/2.0":
            if _VERSION_RE.fullmatch(version):
                raise SipParseError(f"unsupported SIP version {_short(version)}", status=505)
            raise SipParseError(f"malformed request line {_short(first)}")
        if method not in _METHODS and not _TOKEN_RE.fullmatch(method):
            raise SipParseError(f"invalid method {_short(method)}")
        if not uri:
            raise SipParseError("empty Request-URI")
        status = 0
        reason = ""
    headers, firsts, dup = _scan_headers(rest)
    content_length = None
    cl = firsts.get("content-length")
    if cl is not None:
        if dup == "Content-Length":
            raise SipParseError("more than one Content-Length")
        content_length = _small_int(cl)
        if content_length is None:
            raise SipParseError(f"invalid Content-Length {_short(cl)}")
    return _Head(method, uri, status, reason, headers, content_length, firsts, dup)


def _build(head: _Head, body: bytes) -> SipRequest | SipResponse:
    """Construct the message and run the semantic checks that need the whole header set."""
    msg: SipRequest | SipResponse
    if head.method is None:
        msg = SipResponse(head.status, head.reason, head.headers, body)
    else:
        msg = SipRequest(head.method, head.uri, head.headers, body)
    try:
        _validate(msg, head.firsts, head.duplicate)
    except SipError as exc:
        if exc.partial is None:
            exc.partial = msg
        raise
    return msg


def _validate(msg: SipRequest | SipResponse, firsts: dict[str, str], dup: str | None) -> None:
    """Check what the transaction and dialog layers rely on; memoise the parsed views."""
    if dup is not None:
        raise SipParseError(f"duplicate {dup} header")
    for name in ("via", "from", "to", "call-id", "cseq"):
        if name not in firsts:
            raise SipParseError(f"missing {_CANONICAL[name]} header")
    call_id = firsts["call-id"]
    if not call_id or " " in call_id or "\t" in call_id:
        raise SipParseError("malformed Call-ID")
    memo = msg._memo
    raw = firsts["cseq"]
    cseq = parse_cseq(raw)
    memo["cseq"] = (raw, cseq)
    raw = firsts["via"]
    memo["via"] = (raw, parse_via(raw))
    raw = firsts["from"]
    memo["from"] = (raw, parse_name_addr(raw))
    raw = firsts["to"]
    memo["to"] = (raw, parse_name_addr(raw))
    mf = firsts.get("max-forwards")
    if mf is not None:
        value = _small_int(mf)
        if value is None or value > 255:
            raise SipParseError("malformed Max-Forwards")
    if isinstance(msg, SipRequest):
        if cseq.method != msg.method:
            raise SipParseError("CSeq method does not match the request method")
        ruri = parse_uri(msg.uri)
        if ruri.headers:
            raise SipParseError("Request-URI must not carry headers")
        memo[" ruri"] = (msg.uri, ruri)


def _skip_crlf(data: bytes | bytearray, pos: int) -> int:
    while data[pos : pos + 2] == b"\r\n":
        pos += 2
    return pos


def parse_message(data: bytes) -> SipRequest | SipResponse:
    """Parse one whole datagram (UDP).

    RFC 3261 18.3: a missing Content-Length means the body is the rest of the datagram; octets
    after Content-Length bytes of body are ignored (RFC 4475 dblreq); a Content-Length larger
    than what arrived is an error (clerr).
    """
    if len(data) > MAX_DATAGRAM:
        raise SipParseError("datagram too large", status=513)
    start = _skip_crlf(data, 0)
    end = data.find(b"\r\n\r\n", start, start + MAX_HEADER_BYTES + 4)
    if end < 0:
        if len(data) - start > MAX_HEADER_BYTES:
            raise SipParseError("header section too large")
        raise SipParseError("no blank line after the headers" if data[start:] else "empty")
    head = _parse_head(data, start, end)
    body_start = end + 4
    if head.content_length is None:
        body = bytes(data[body_start:])
    else:
        if head.content_length > len(data) - body_start:
            partial = _build_unchecked(head)
            raise SipParseError("Content-Length exceeds the datagram", partial=partial)
        body = bytes(data[body_start : body_start + head.content_length])
    return _build(head, body)


def _build_unchecked(head: _Head) -> SipRequest | SipResponse:
    if head.method is None:
        return SipResponse(head.status, head.reason, head.headers)
    return SipRequest(head.method, head.uri, head.headers)


def is_keepalive(data: bytes) -> bool:
    """A datagram of only CRLFs: an RFC 5626 keepalive, to be ignored rather than answered 400."""
    return bool(data) and not data.strip(b"\r\n")


# --------------------------------------------------------------------------------------------
# Streams


class KeepalivePing:
    """RFC 5626 double-CRLF ping on a stream; the transport answers with a single CRLF pong."""

    _instance: KeepalivePing | None = None

    def __new__(cls) -> KeepalivePing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "PING"


PING: Final = KeepalivePing()

#: What the beginning of a start line can look like; and a complete one (with its version).
_START_RE: Final = re.compile(rb"(?:SIP/[0-9]|" + _TOKEN.encode() + rb" \S)")
_FIRST_LINE_RE: Final = re.compile(
    rb"(?:SIP/[0-9]|" + _TOKEN.encode() + rb" [^ ]+ [Ss][Ii][Pp]/[0-9])"
)

StreamItem: TypeAlias = SipRequest | SipResponse | KeepalivePing | SipParseError


class StreamFramer:
    """Frames SIP messages on a TCP/TLS byte stream by Content-Length (RFC 3261 18.3).

    ``feed`` returns, in arrival order, complete messages, :data:`PING` for each keepalive ping,
    and :class:`SipParseError` instances for messages that were framed correctly but are
    semantically invalid (the transport answers 400 using ``error.partial`` and keeps the
    connection). It *raises* :class:`SipParseError` when framing itself is lost (garbage, missing
    or invalid Content-Length, limits exceeded): nothing after that point can be trusted, so the
    transport closes the connection. Memory is bounded by the header and body limits.
    """

    __slots__ = ("_buf", "_crlfs", "_head", "_max_body", "_max_header", "_need", "_scan")

    def __init__(
        self, *, max_body: int = MAX_STREAM_BODY, max_header: int = MAX_HEADER_BYTES
    ) -> None:
        self._buf = bytearray()
        self._max_body = max_body
        self._max_header = max_header
        self._scan = 0  # where to resume looking for the blank line
        self._crlfs = 0  # CRLFs seen between messages (two make a ping)
        self._head: _Head | None = None  # parsed head of the message whose body we await
        self._need = 0  # total bytes (head + body) of that message

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[StreamItem]:
        buf = self._buf
        buf += data
        out: list[StreamItem] = []
        while buf:
            if self._head is None:
                if not self._between_messages(buf, out):
                    break
                end = buf.find(b"\r\n\r\n", self._scan)
                if end < 0:
                    self._check_partial_head(buf)
                    break
                if end + 4 > self._max_header:
                    raise SipParseError("header section too large")
                head = _parse_head(buf, 0, end)
                if head.content_length is None:
                    raise SipParseError("Content-Length is mandatory on stream transports")
                if head.content_length > self._max_body:
                    raise SipParseError("body too large", status=413)
                self._head = head
                self._need = end + 4 + head.content_length
                self._scan = 0
            if len(buf) < self._need:
                break
            head, need = self._head, self._need
            body = bytes(buf[need - head.content_length : need])  # type: ignore[operator]
            del buf[:need]
            self._head = None
            try:
                out.append(_build(head, body))
            except SipParseError as exc:
                out.append(exc)
        return out

    def _between_messages(self, buf: bytearray, out: list[StreamItem]) -> bool:
        """Consume CRLFs before a start line; False if more bytes are needed."""
        i = 0
        n = len(buf)
        while i + 1 < n and buf[i] == 13 and buf[i + 1] == 10:
            i += 2
            self._crlfs += 1
            if self._crlfs == 2:
                out.append(PING)
                self._crlfs = 0
        if i:
            del buf[:i]
            self._scan = 0
        if not buf or (len(buf) == 1 and buf[0] == 13):
            return False
        self._crlfs = 0
        return True

    def _check_partial_head(self, buf: bytearray) -> None:
        if len(buf) > self._max_header:
            raise SipParseError("header section too large")
        nl = buf.find(b"\r\n")
        first = buf if nl < 0 else buf[:nl]
        # A partial first line is judged once it is long enough to hold any sane method.
        if nl >= 0:
            if _FIRST_LINE_RE.match(first) is None:
                raise SipParseError("garbage on stream: not a SIP start line")
        elif len(first) >= 64 and _START_RE.match(first) is None:
            raise SipParseError("garbage on stream: not a SIP start line")
        if nl >= 0 and nl > MAX_LINE:
            raise SipParseError("start line too long")
        self._scan = max(0, len(buf) - 3)


# --------------------------------------------------------------------------------------------
# Building responses


_TAG_RE: Final = re.compile(r";[ \t]*tag[ \t]*=", re.I)


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> SipResponse:
    """A response per RFC 3261 8.2.6: Via list, From, To (+tag), Call-ID, CSeq copied verbatim.

    Works on the ``partial`` request of a :class:`SipParseError` too (it never parses what it
    copies). A 100 Trying also echoes Timestamp (8.2.6.1).
    """
    out = Headers()
    items = out._items
    src = request.headers._items
    for item in src:
        if item[0] == "via":
            items.append(item)
    for key in ("from", "to", "call-id", "cseq"):
        for item in src:
            if item[0] == key:
                if key == "to" and to_tag is not None and not _has_tag(item[2]):
                    items.append((key, item[1], f"{item[2]};tag={to_tag}"))
                else:
                    items.append(item)
                break
    if status == 100:
        for item in src:
            if item[0] == "timestamp":
                items.append(item)
    if headers is not None:
        for name, value in Headers(headers) if not isinstance(headers, Headers) else headers:
            out.add(name, value)
    if content_type is not None:
        out.set("Content-Type", content_type)
    return SipResponse(status, reason, out, body)


def _has_tag(to_value: str) -> bool:
    try:
        return "tag" in parse_name_addr(to_value).params
    except SipParseError:
        return _TAG_RE.search(to_value) is not None


def _same_address(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return ipaddress.ip_address(a.strip("[]")) == ipaddress.ip_address(b.strip("[]"))
    except ValueError:
        return a.lower() == b.lower()


def apply_rport(request: SipRequest, source_ip: str, source_port: int) -> None:
    """Record where the request really came from in its top Via (RFC 3261 18.2.1, RFC 3581 4).

    ``received`` is added when the sent-by host differs from the source address, and also
    whenever ``rport`` is present: RFC 3581 says the server MUST then insert it even if
    identical, so the client can learn its public address. An empty ``rport`` is filled with
    the source port. The request is modified in place; responses built afterwards echo it.
    """
    via = request.via
    params = dict(via.params)
    if via.has_rport or not _same_address(via.host, source_ip):
        params["received"] = source_ip
    if via.has_rport and not params.get("rport"):
        params["rport"] = str(source_port)
    if params != via.params:
        request.headers.replace_first("via", str(Via(via.transport, via.host, via.port, params)))


def require_supported(request: SipRequest, supported: Iterable[str]) -> None:
    """Raise :class:`UnsupportedExtension` (420) if the request requires an unknown option-tag.

    ACK and CANCEL are exempt (RFC 3261 8.2.2.3): they cannot be rejected.
    """
    if request.method in ("ACK", "CANCEL"):
        return
    required = request.headers.get_list("require")
    if not required:
        return
    known = {s.lower() for s in supported}
    missing = tuple(tag for tag in required if tag.lower() not in known)
    if missing:
        raise UnsupportedExtension(missing, partial=request)
