"""The versioned ciphertext format of every encrypted Callvault artifact (AES-256-GCM).

Layout, byte by byte (``L`` = length of the key id)::

    offset   size    field
    0        2       magic, ASCII "CV" (0x43 0x56)
    2        1       format version, 0x01
    3        1       L, length of the key id, 1..255
    4        L       key id, printable ASCII (0x21..0x7e), e.g. "ck-3f9a..."
    4+L      12      nonce, random (os.urandom)
    16+L     n+16    AES-256-GCM ciphertext of the n plaintext bytes, then the 16-byte tag

Bytes ``0 .. 16+L`` are the *header*. The associated data authenticated by the tag is::

    header || u32be(len(workspace_id)) || workspace_id || u32be(len(call_id)) || call_id
           || u32be(len(kind)) || kind || u32be(len(region)) || region

(fields UTF-8 encoded, in that fixed order). Length prefixes make the encoding injective, so
``("ab", "c")`` and ``("a", "bc")`` authenticate differently.

Why the header is authenticated: flipping the key id or the version cannot redirect a reader to
another key or another parser without the tag failing. Why the context is *not* in the blob: the
reader must supply :class:`Aad` from its own record (the row, object key or topic message it is
processing). A ciphertext copied to another call, workspace, region or artifact kind then fails
to authenticate instead of decrypting into the wrong place. Only the key id travels in clear, so
a reader can find which key to fetch (:func:`peek_key_id`).

Nonces are random 96-bit values. NIST SP 800-38D bounds random-nonce GCM at 2**32 messages per
key (collision probability below 2**-32); a nonce collision under one key leaks the XOR of two
plaintexts and the authentication key. Each call has its own data key and a call produces a few
hundred artifacts, so every key stays many orders of magnitude below the bound — the reason data
keys are per call rather than per workspace. A single seal is limited to 2**31 - 1 bytes by the
library; large recordings are meant for segmented streaming AEAD, not one envelope.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from callvault.crypto.errors import DecryptionFailed, MalformedCiphertext

__all__ = [
    "KEY_SIZE",
    "MAGIC",
    "NONCE_SIZE",
    "TAG_SIZE",
    "VERSION",
    "Aad",
    "KeyLookup",
    "canonical_fields",
    "overhead",
    "peek_key_id",
    "seal",
    "unseal",
]

MAGIC: Final = b"CV"
VERSION: Final = 1
KEY_SIZE: Final = 32
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
MAX_KEY_ID: Final = 255
_PREFIX: Final = len(MAGIC) + 2  # magic, version, key-id length

KeyLookup = Callable[[str], bytes]
"""Maps the key id named in a blob to the 32-byte key (raises if the key is unavailable)."""


def canonical_fields(*fields: str) -> bytes:
    """An injective byte encoding of a sequence of strings: ``u32be(len) || utf-8`` per field.

    Shared by every AAD in the package so no two distinct contexts can ever authenticate alike.
    """
    out = bytearray()
    for value in fields:
        raw = value.encode("utf-8")
        out += struct.pack(">I", len(raw))
        out += raw
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Aad:
    """Where an artifact belongs; the reader builds it from its own record, never from the blob.

    ``kind`` is the artifact kind ("audio", "transcript", "metadata", "summary", "recording",
    "document", ...): binding it stops a transcript blob being served as a summary.
    """

    workspace_id: str
    call_id: str
    kind: str
    region: str

    def __post_init__(self) -> None:
        for name in ("workspace_id", "call_id", "kind", "region"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"Aad.{name} must be a non-empty string")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"Aad.{name} is not encodable as UTF-8") from None

    def encode(self) -> bytes:
        return canonical_fields(self.workspace_id, self.call_id, self.kind, self.region)


def overhead(key_id: str) -> int:
    """Bytes an envelope adds to its plaintext with this key id (for sizing, not security)."""
    return _PREFIX + len(key_id) + NONCE_SIZE + TAG_SIZE


def seal(key: bytes, key_id: str, plaintext: bytes, aad: Aad) -> bytes:
    """Encrypt ``plaintext`` under ``key`` into a self-describing envelope bound to ``aad``."""
    _check_key(key)
    raw_id = _check_key_id(key_id)
    nonce = os.urandom(NONCE_SIZE)
    header = MAGIC + bytes((VERSION, len(raw_id))) + raw_id + nonce
    body = AESGCM(key).encrypt(nonce, plaintext, header + aad.encode())
    return header + body


def unseal(key: bytes | KeyLookup, blob: bytes, aad: Aad) -> bytes:
    """Authenticate and decrypt ``blob`` with the context the reader expects.

    ``key`` is the key itself or a lookup called with the blob's key id. Any blob — truncated,
    garbage, tampered, for another context — raises :class:`DecryptionFailed` (or its subclass
    :class:`MalformedCiphertext`), never another exception type; errors of a lookup propagate.
    """
    key_id, header, body = _parse(blob)
    key_bytes = key(key_id) if callable(key) else key
    _check_key(key_bytes)
    nonce = header[-NONCE_SIZE:]
    try:
        return AESGCM(key_bytes).decrypt(nonce, body, header + aad.encode())
    except InvalidTag:
        raise DecryptionFailed(
            "ciphertext could not be authenticated (wrong key, wrong context or tampered)"
        ) from None


def peek_key_id(blob: bytes) -> str:
    """The key id a blob was sealed under (unauthenticated until :func:`unseal` succeeds)."""
    return _parse(blob)[0]


def _parse(blob: bytes) -> tuple[str, bytes, bytes]:
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise MalformedCiphertext("ciphertext must be bytes")
    data = bytes(blob)
    if len(data) < _PREFIX or data[:2] != MAGIC:
        raise MalformedCiphertext("not a Callvault ciphertext (bad magic)")
    if data[2] != VERSION:
        raise MalformedCiphertext(f"unsupported ciphertext version {data[2]}")
    id_len = data[3]
    header_len = _PREFIX + id_len + NONCE_SIZE
    if id_len == 0 or len(data) < header_len + TAG_SIZE:
        raise MalformedCiphertext("truncated ciphertext")
    raw_id = data[_PREFIX : _PREFIX + id_len]
    if not all(0x21 <= b <= 0x7E for b in raw_id):
        raise MalformedCiphertext("ciphertext key id is not printable ASCII")
    return raw_id.decode("ascii"), data[:header_len], data[header_len:]


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        raise ValueError(f"an AES-256 key is exactly {KEY_SIZE} bytes")


def _check_key_id(key_id: str) -> bytes:
    raw = key_id.encode("utf-8") if isinstance(key_id, str) else b""
    if not 1 <= len(raw) <= MAX_KEY_ID or not all(0x21 <= b <= 0x7E for b in raw):
        raise ValueError(f"key id must be 1..{MAX_KEY_ID} printable ASCII characters")
    return raw
