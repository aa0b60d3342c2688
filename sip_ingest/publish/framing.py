"""The record the publisher carries and its on-disk frame.

A frame is ``length (u32 LE) | crc32 (u32 LE) | payload``; the CRC covers the length bytes and the
payload, so a torn write, a zero-filled tail after a power cut and a flipped bit are all caught by
one comparison. The plain payload is length-prefixed fields rather than Avro or pickle: the
journal must stay readable by any later version of this code without a schema of its own, and
must never execute anything it reads. In an encrypted segment the frame's payload is
``nonce | ciphertext | tag`` of that plain payload (see :mod:`~sip_ingest.publish.journal`); the
CRC covers the bytes as stored, so torn writes are found without the key.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

from sip_ingest.publish.errors import JournalError

FRAME_HEADER = struct.Struct("<II")
_LEN = struct.Struct("<I")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")

#: Upper bound on one payload. Anything bigger in a length field is corruption, not data (Kafka
#: refuses records above ~1 MiB anyway).
MAX_PAYLOAD = 16 * 1024 * 1024
_MIN_PAYLOAD = 2 + 4 + 4 + 2

Headers = tuple[tuple[str, bytes], ...]


class Record(NamedTuple):
    topic: str
    key: bytes
    value: bytes
    headers: Headers = ()

    @property
    def size(self) -> int:
        """Bytes of key, value and headers: what counts against Kafka's record size limit."""
        return len(self.key) + len(self.value) + sum(len(n) + len(v) for n, v in self.headers)


def encode_frame(record: Record) -> bytes:
    """The frame of ``record`` with its payload in clear (the format of ``CVJRNL01`` segments)."""
    return frame(encode_payload(record))


def encode_payload(record: Record) -> bytes:
    """The plain payload of ``record`` (what an encrypted segment seals before framing it)."""
    topic = record.topic.encode()
    parts = [_U16.pack(len(topic)), topic, _U32.pack(len(record.key)), record.key]
    parts += [_U32.pack(len(record.value)), record.value, _U16.pack(len(record.headers))]
    for name, value in record.headers:
        raw = name.encode()
        parts += [_U16.pack(len(raw)), raw, _U32.pack(len(value)), value]
    return b"".join(parts)


def frame(payload: bytes) -> bytes:
    """``length | crc32 | payload``, whatever the payload holds (plain fields or ciphertext)."""
    if len(payload) > MAX_PAYLOAD:
        raise JournalError(f"record of {len(payload)} bytes exceeds the journal frame limit")
    return FRAME_HEADER.pack(len(payload), frame_crc(len(payload), payload)) + payload


def frame_crc(length: int, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(_LEN.pack(length)))


def plausible_length(length: int) -> bool:
    return _MIN_PAYLOAD <= length <= MAX_PAYLOAD


def decode_payload(payload: bytes) -> Record:
    """Parse a payload whose CRC already matched; raises ValueError if its fields do not add up."""
    view = memoryview(payload)
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(view):
            raise ValueError("field runs past the end of the frame")
        out = bytes(view[pos : pos + n])
        pos += n
        return out

    def u16() -> int:
        return int(_U16.unpack(take(2))[0])

    def u32() -> int:
        return int(_U32.unpack(take(4))[0])

    topic = take(u16()).decode()
    key = take(u32())
    value = take(u32())
    headers = []
    for _ in range(u16()):
        name = take(u16()).decode()
        headers.append((name, take(u32())))
    if pos != len(view):
        raise ValueError("trailing bytes after the last field")
    return Record(topic, key, value, tuple(headers))
