"""Independent parsers for what the SIEM sinks emit: RFC 5424 messages, CEF, HEC request bodies.

Written from the specs, not from the renderers, so a round trip proves the output is parseable.
"""

from __future__ import annotations

import json
import re
from typing import Any

_HEADER = re.compile(
    rb"<(?P<pri>\d{1,3})>(?P<version>[1-9]\d{0,2}) (?P<timestamp>\S+) (?P<hostname>\S+) "
    rb"(?P<app_name>\S+) (?P<procid>\S+) (?P<msgid>\S+) "
)


def parse_rfc5424(raw: bytes) -> dict[str, Any]:
    try:
        return _parse_rfc5424(raw)
    except (AssertionError, IndexError, ValueError) as exc:
        raise AssertionError(f"unparseable RFC 5424 message {raw!r}") from exc


def _parse_rfc5424(raw: bytes) -> dict[str, Any]:
    m = _HEADER.match(raw)
    assert m, f"not an RFC 5424 header: {raw[:120]!r}"
    out: dict[str, Any] = {k: v.decode() for k, v in m.groupdict().items()}
    for name in ("hostname", "app_name", "procid", "msgid"):
        assert all(33 <= b <= 126 for b in m.group(name)), name
    assert len(m.group("msgid")) <= 32
    rest = raw[m.end() :]
    sd: dict[str, dict[str, str]] = {}
    if rest.startswith(b"-"):
        rest = rest[1:]
    else:
        text = rest.decode()
        i = 0
        while i < len(text) and text[i] == "[":
            j = i + 1
            while text[j] not in " ]":
                j += 1
            sd_id = text[i + 1 : j]
            params: dict[str, str] = {}
            while text[j] == " ":
                k = text.index("=", j)
                name = text[j + 1 : k]
                assert text[k + 1] == '"'
                k += 2
                value = []
                while text[k] != '"':
                    if text[k] == "\\" and text[k + 1] in '"\\]':
                        value.append(text[k + 1])
                        k += 2
                    else:
                        assert text[k] not in '"]', "unescaped special char in PARAM-VALUE"
                        value.append(text[k])
                        k += 1
                params[name] = "".join(value)
                j = k + 1
            assert text[j] == "]"
            sd[sd_id] = params
            i = j + 1
        rest = text[i:].encode()
    out["sd"] = sd
    assert rest[:1] in (b"", b" ")
    msg = rest[1:]
    out["bom"] = msg.startswith(b"\xef\xbb\xbf")
    out["msg"] = msg[3:].decode() if out["bom"] else msg.decode()
    return out


def parse_cef(text: str) -> tuple[list[str], dict[str, str]]:
    """Header fields (unescaped) and extension key/values (unescaped)."""
    fields: list[str] = []
    cur: list[str] = []
    i = 0
    while len(fields) < 7:
        c = text[i]
        if c == "\\" and text[i + 1] in "\\|":
            cur.append(text[i + 1])
            i += 2
        elif c == "|":
            fields.append("".join(cur))
            cur = []
            i += 1
        else:
            cur.append(c)
            i += 1
    ext_text = text[i:]
    ext: dict[str, str] = {}
    # keys are [A-Za-z0-9]+ followed by an unescaped '='; values run to the next key
    starts = [
        m
        for m in re.finditer(r"(?:^| )([A-Za-z0-9_]+)=", ext_text)
        if not _escaped(ext_text, m.end() - 1)
    ]
    for n, m in enumerate(starts):
        end = starts[n + 1].start() if n + 1 < len(starts) else len(ext_text)
        raw = ext_text[m.end() : end]
        ext[m.group(1)] = _unescape_ext(raw)
    return fields, ext


def _escaped(text: str, pos: int) -> bool:
    n = 0
    while pos - 1 - n >= 0 and text[pos - 1 - n] == "\\":
        n += 1
    return n % 2 == 1


def _unescape_ext(raw: str) -> str:
    out = []
    i = 0
    while i < len(raw):
        if raw[i] == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            out.append({"n": "\n", "r": "\r"}.get(nxt, nxt))
            i += 2
        else:
            assert raw[i] != "=", f"unescaped '=' in CEF value {raw!r}"
            out.append(raw[i])
            i += 1
    return "".join(out)


def parse_hec_body(body: bytes) -> list[dict[str, Any]]:
    """A HEC /services/collector/event body: JSON objects back to back (whitespace allowed)."""
    text = body.decode()
    dec = json.JSONDecoder()
    objs: list[dict[str, Any]] = []
    i = 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            break
        obj, i = dec.raw_decode(text, i)
        assert isinstance(obj, dict), "each HEC event must be a JSON object"
        objs.append(obj)
    return objs


def check_hec_event(obj: dict[str, Any]) -> None:
    """The documented HEC event protocol: ``event`` required (string or object); ``time`` epoch
    seconds (number, or numeric string); ``host``/``source``/``sourcetype``/``index`` strings;
    ``fields`` a flat object."""
    assert "event" in obj, "HEC event without 'event'"
    assert obj["event"] not in ("", None, {}), "HEC rejects empty events"
    allowed = {"event", "time", "host", "source", "sourcetype", "index", "fields"}
    assert set(obj) <= allowed, f"unknown HEC keys {set(obj) - allowed}"
    if "time" in obj:
        t = obj["time"]
        assert isinstance(t, int | float) or (isinstance(t, str) and float(t) >= 0)
    for key in ("host", "source", "sourcetype", "index"):
        if key in obj:
            assert isinstance(obj[key], str)
    if "fields" in obj:
        assert isinstance(obj["fields"], dict)
        assert all(not isinstance(v, dict) for v in obj["fields"].values())
