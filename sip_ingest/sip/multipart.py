"""``multipart/mixed`` bodies (RFC 2046 5.1), as SIPREC sends them (SDP + rs-metadata XML).

Parsing is byte-exact: part bodies are returned without the CRLF that belongs to the following
delimiter, so an SDP or XML part is exactly what the sender put there. CRLF is expected (RFC
2046); a bare LF before a delimiter is tolerated because some SIPREC clients build bodies with
``\\n`` and the framing stays unambiguous.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from typing import Final, NamedTuple

from sip_ingest.sip.errors import SipParseError
from sip_ingest.sip.message import Headers, parse_header_block

__all__ = [
    "BodyPart",
    "encode_multipart",
    "find_part",
    "parse_content_type",
    "parse_multipart",
]

_MAX_PARTS: Final = 16
_BOUNDARY_RE: Final = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_CT_PARAM_RE: Final = re.compile(
    r"[ \t]*;[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*=[ \t]*(\"(?:[^\"\\]|\\.)*\"|[^;\s\"]+)", re.S
)


class BodyPart(NamedTuple):
    #: Media type without parameters, lower-cased; ``text/plain`` when the part has none.
    content_type: str
    headers: Headers
    body: bytes


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """``type/subtype`` lower-cased and its parameters (names lower-cased, values unquoted)."""
    mime, semi, rest = value.partition(";")
    mime = mime.strip(" \t").lower()
    if "/" not in mime:
        raise SipParseError(f"malformed Content-Type {value[:60]!r}")
    params: dict[str, str] = {}
    text = semi + rest
    pos = 0
    while pos < len(text):
        m = _CT_PARAM_RE.match(text, pos)
        if m is None:
            if text[pos:].strip(" \t;"):
                raise SipParseError(f"malformed Content-Type parameters in {value[:60]!r}")
            break
        raw = m[2]
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[m[1].lower()] = raw
        pos = m.end()
    return mime, params


def parse_multipart(content_type: str, body: bytes) -> list[BodyPart]:
    """Split a multipart body; ``content_type`` is the message's Content-Type header value."""
    mime, params = parse_content_type(content_type)
    if not mime.startswith("multipart/"):
        raise SipParseError(f"not a multipart body: {mime!r}")
    boundary = params.get("boundary")
    if not boundary or not _BOUNDARY_RE.fullmatch(boundary):
        raise SipParseError("missing or invalid multipart boundary")
    dash = b"--" + boundary.encode("ascii")
    delimiter = b"\n" + dash
    if body.startswith(dash):
        pos = 0
    else:
        found = body.find(delimiter)
        if found < 0:
            raise SipParseError("multipart body without a delimiter")
        pos = found + 1  # the preamble (and its line break) is discarded
    parts: list[BodyPart] = []
    while True:
        after = pos + len(dash)
        if body.startswith(b"--", after):
            break  # close delimiter; the epilogue is discarded
        eol = body.find(b"\n", after)
        if eol < 0 or body[after:eol].rstrip(b"\r").strip(b" \t"):
            raise SipParseError("malformed multipart delimiter line")
        start = eol + 1
        nxt = body.find(delimiter, start - 1)
        if nxt < 0:
            raise SipParseError("multipart body without a close delimiter")
        end = nxt - 1 if nxt > 0 and body[nxt - 1] == 13 else nxt
        if end < start:
            end = start
        parts.append(_parse_part(body[start:end]))
        if len(parts) > _MAX_PARTS:
            raise SipParseError(f"more than {_MAX_PARTS} body parts")
        pos = nxt + 1
    if not parts:
        raise SipParseError("multipart body without parts")
    return parts


def _parse_part(raw: bytes) -> BodyPart:
    if raw.startswith(b"\r\n"):
        head, content = b"", raw[2:]
    elif raw.startswith(b"\n"):
        head, content = b"", raw[1:]
    else:
        split = raw.find(b"\r\n\r\n")
        if split >= 0:
            head, content = raw[:split], raw[split + 4 :]
        else:
            split = raw.find(b"\n\n")
            if split < 0:
                head, content = raw, b""
            else:
                head, content = raw[:split], raw[split + 2 :]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.decode("latin-1")
    if "\r\n" not in text:
        text = text.replace("\n", "\r\n")
    text = text.rstrip("\r\n")
    headers = parse_header_block(text)
    ctype = headers.get("content-type")
    mime = parse_content_type(ctype)[0] if ctype else "text/plain"
    return BodyPart(mime, headers, content)


def find_part(parts: Iterable[BodyPart], mime: str) -> BodyPart | None:
    """First part of the given media type (``application/sdp``)."""
    mime = mime.lower()
    return next((p for p in parts if p.content_type == mime), None)


def encode_multipart(
    parts: Iterable[tuple[str, bytes] | tuple[str, bytes, dict[str, str]]],
    boundary: str | None = None,
) -> tuple[str, bytes]:
    """Build a ``multipart/mixed`` body; returns (Content-Type value, body)."""
    boundary = boundary or "callvault-" + secrets.token_hex(12)
    if not _BOUNDARY_RE.fullmatch(boundary):
        raise ValueError("invalid boundary")
    dash = b"--" + boundary.encode("ascii")
    out = bytearray()
    for part in parts:
        ctype, content = part[0], part[1]
        extra = part[2] if len(part) > 2 else {}
        if dash in content:
            raise ValueError("boundary occurs in a part")
        out += dash + b"\r\nContent-Type: " + ctype.encode("utf-8") + b"\r\n"
        for name, value in extra.items():
            out += f"{name}: {value}\r\n".encode()
        out += b"\r\n" + content + b"\r\n"
    out += dash + b"--\r\n"
    return f"multipart/mixed;boundary={boundary}", bytes(out)
