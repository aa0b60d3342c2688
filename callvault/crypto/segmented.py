"""Segmented streaming AEAD for large artifacts (recordings): bounded memory, random access.

A one-hour call does not fit one :mod:`~callvault.crypto.envelope` (a single AES-GCM seal holds
the whole plaintext in memory and cannot be read in part). This format cuts the plaintext into
fixed-size segments, each sealed with AES-256-GCM on its own, in the spirit of Google Tink's
AES-GCM-HKDF streaming AEAD and the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár,
"Online Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", CRYPTO 2015).

Layout, byte by byte (``L`` = length of the key id, ``S`` = plaintext segment size)::

    offset   size    field
    0        3       magic, ASCII "CVS" (0x43 0x56 0x53)
    3        1       format version, 0x01
    4        1       L, length of the key id, 1..255
    5        L       key id, printable ASCII (0x21..0x7e), same rules as the envelope
    5+L      16      salt, random (os.urandom), one per object
    21+L     7       nonce prefix, random (os.urandom), one per object
    28+L     4       S, u32be, plaintext bytes per segment (MIN_SEGMENT_SIZE..MAX_SEGMENT_SIZE)
    32+L     ...     segments 0 .. n-1

Bytes ``0 .. 32+L`` are the *header*. Segment ``i`` is the AES-256-GCM ciphertext of plaintext
bytes ``i*S .. (i+1)*S`` followed by its 16-byte tag, so every segment but the last is exactly
``S + 16`` bytes and the last holds ``1..S`` plaintext bytes plus the tag. An empty plaintext is
one final segment of 0 bytes (16 bytes of tag); an empty final segment after full segments is
never written and is refused on reading, so sizes map one to one
(:func:`ciphertext_size`, :func:`plaintext_size`).

Keys and nonces::

    subkey  = HKDF-SHA256(ikm=call key, salt=salt, length=32,
                          info=b"callvault segmented v1" || Aad.encode())
    nonce_i = nonce_prefix (7 bytes) || u32be(i) || last (1 byte: 0x01 final segment, else 0x00)
    aad_i   = header

* The per-object subkey gives each object its own 2**32 segment budget (the index is 32 bits),
  and the random salt makes subkeys of two objects under one call key independent, so the short
  random nonce prefix never has to be unique across objects.
* The context (:class:`~callvault.crypto.envelope.Aad`: workspace, call, kind, region, encoded by
  :func:`~callvault.crypto.envelope.canonical_fields`) goes into the HKDF info: a ciphertext read
  under another context derives another key and every segment fails.
* Every segment authenticates the whole header, so the key id, salt, prefix and segment size
  cannot be changed or swapped.
* The index in the nonce stops reordering and duplication; the last flag stops truncation at a
  segment boundary (the new last segment was sealed as "not last") and appending; the per-object
  subkey stops splicing segments between objects, even of the same call and key.

Streaming decryption (:func:`decrypt_stream`) yields each segment's plaintext as soon as that
segment authenticates; truncation is only detected at the end. A consumer must treat what it
received as provisional until the iterator finished without an exception (e.g. write to a temp
object, then rename), as with every online AEAD.

Every failure to open -- garbage, truncation, tampering, wrong key or context -- raises
:class:`~callvault.crypto.errors.DecryptionFailed` or its subclass
:class:`~callvault.crypto.errors.MalformedCiphertext`; errors of a key lookup propagate.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from callvault.crypto.envelope import (
    KEY_SIZE,
    MAX_KEY_ID,
    TAG_SIZE,
    Aad,
    KeyLookup,
    _check_key,
    _check_key_id,
)
from callvault.crypto.errors import DecryptionFailed, MalformedCiphertext

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "MAGIC",
    "MAX_SEGMENT_SIZE",
    "MIN_SEGMENT_SIZE",
    "VERSION",
    "Encryptor",
    "ReadAt",
    "ciphertext_size",
    "decrypt_range",
    "decrypt_stream",
    "header_size",
    "plaintext_size",
]

MAGIC: Final = b"CVS"
VERSION: Final = 1
SALT_SIZE: Final = 16
NONCE_PREFIX_SIZE: Final = 7
DEFAULT_SEGMENT_SIZE: Final = 64 * 1024
MIN_SEGMENT_SIZE: Final = 64
MAX_SEGMENT_SIZE: Final = 8 * 1024 * 1024
"""Upper bound, also on read: a forged header cannot make a reader buffer more than this."""
MAX_SEGMENTS: Final = 2**32
HKDF_INFO: Final = b"callvault segmented v1"
_PREFIX: Final = len(MAGIC) + 2  # magic, version, key-id length
_FIXED: Final = SALT_SIZE + NONCE_PREFIX_SIZE + 4
_MAX_HEADER: Final = _PREFIX + MAX_KEY_ID + _FIXED

ReadAt = Callable[[int, int], bytes]
"""``read_at(offset, size)`` returns ``size`` bytes of the ciphertext from ``offset`` (fewer only
at the end of the object), e.g. an S3 ranged GET."""


def header_size(key_id: str) -> int:
    """Bytes of the header for this key id."""
    return _PREFIX + len(_check_key_id(key_id)) + _FIXED


def ciphertext_size(
    plaintext_size: int, key_id: str, segment_size: int = DEFAULT_SEGMENT_SIZE
) -> int:
    """Exact size of the ciphertext of ``plaintext_size`` bytes (for sizing, not security)."""
    _check_segment_size(segment_size)
    if plaintext_size < 0:
        raise ValueError("plaintext size cannot be negative")
    segments = max(1, -(-plaintext_size // segment_size))
    return header_size(key_id) + plaintext_size + segments * TAG_SIZE


def plaintext_size(
    ciphertext_size: int, key_id: str, segment_size: int = DEFAULT_SEGMENT_SIZE
) -> int:
    """The plaintext size of a ciphertext of ``ciphertext_size`` bytes.

    Raises :class:`MalformedCiphertext` for a size no encryption produces (a truncated object).
    """
    _check_segment_size(segment_size)
    return _segments_layout(ciphertext_size - header_size(key_id), segment_size)[1]


class Encryptor:
    """Encrypts one object incrementally; memory stays at about one segment.

    ``update`` returns the ciphertext that is ready (the header first), holding back at most one
    segment of plaintext, because only ``finalize`` knows which segment is the last. The
    concatenation of every return value, in order, is the object.
    """

    __slots__ = (
        "_aesgcm",
        "_buffer",
        "_done",
        "_header",
        "_header_sent",
        "_index",
        "_key_id",
        "_nonce_prefix",
        "_segment_size",
    )

    def __init__(
        self,
        key: bytes,
        key_id: str,
        aad: Aad,
        *,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
    ) -> None:
        _check_key(key)
        raw_id = _check_key_id(key_id)
        _check_segment_size(segment_size)
        salt = os.urandom(SALT_SIZE)
        self._nonce_prefix = os.urandom(NONCE_PREFIX_SIZE)
        self._header = (
            MAGIC
            + bytes((VERSION, len(raw_id)))
            + raw_id
            + salt
            + self._nonce_prefix
            + struct.pack(">I", segment_size)
        )
        self._aesgcm = AESGCM(_derive(key, salt, aad))
        self._key_id = key_id
        self._segment_size = segment_size
        self._buffer = bytearray()
        self._index = 0
        self._header_sent = False
        self._done = False

    def __repr__(self) -> str:
        state = "finalized" if self._done else f"{self._index} segments written"
        return f"Encryptor(key_id={self._key_id!r}, segment_size={self._segment_size}, {state})"

    @property
    def header(self) -> bytes:
        return self._header

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Add plaintext; return the ciphertext of every segment that is now complete."""
        if self._done:
            raise ValueError("Encryptor already finalized")
        out = bytearray(self._take_header())
        view = memoryview(data).cast("B")
        size = self._segment_size
        pos = 0
        if self._buffer:
            fill = min(size - len(self._buffer), len(view))
            self._buffer += view[:fill]
            pos = fill
            if len(self._buffer) == size and pos < len(view):
                out += self._seal(self._buffer, last=False)
                self._buffer.clear()
        # Whole segments straight from the input, always keeping one back for finalize.
        while len(view) - pos > size:
            out += self._seal(view[pos : pos + size], last=False)
            pos += size
        if pos < len(view):
            self._buffer += view[pos:]
        return bytes(out)

    def finalize(self) -> bytes:
        """Seal the held-back plaintext as the final segment; the object is then complete."""
        if self._done:
            raise ValueError("Encryptor already finalized")
        out = self._take_header() + self._seal(self._buffer, last=True)
        self._buffer.clear()
        self._done = True
        return out

    def _take_header(self) -> bytes:
        if self._header_sent:
            return b""
        self._header_sent = True
        return self._header

    def _seal(self, plaintext: bytes | bytearray | memoryview, *, last: bool) -> bytes:
        if self._index >= MAX_SEGMENTS:
            raise ValueError("object too large for its segment size (2**32 segments)")
        nonce = _nonce(self._nonce_prefix, self._index, last)
        self._index += 1
        return self._aesgcm.encrypt(nonce, bytes(plaintext), self._header)


class _Opened:
    """A parsed header with the derived subkey: opens segments by index."""

    __slots__ = ("aesgcm", "header", "nonce_prefix", "segment_size")

    def __init__(self, key: bytes | KeyLookup, header: bytes, aad: Aad) -> None:
        key_id, salt, nonce_prefix, segment_size = _parse_header(header)
        key_bytes = key(key_id) if callable(key) else key
        _check_key(key_bytes)
        self.aesgcm = AESGCM(_derive(key_bytes, salt, aad))
        self.header = header
        self.nonce_prefix = nonce_prefix
        self.segment_size = segment_size

    def __repr__(self) -> str:
        return f"_Opened(segment_size={self.segment_size})"

    def open(self, index: int, segment: bytes | bytearray | memoryview, *, last: bool) -> bytes:
        if len(segment) < TAG_SIZE or len(segment) > self.segment_size + TAG_SIZE:
            raise MalformedCiphertext("truncated ciphertext segment")
        if last and index > 0 and len(segment) == TAG_SIZE:
            raise MalformedCiphertext("empty final segment after full segments")
        try:
            return self.aesgcm.decrypt(
                _nonce(self.nonce_prefix, index, last), bytes(segment), self.header
            )
        except InvalidTag:
            raise DecryptionFailed(
                "segment could not be authenticated (wrong key, wrong context, tampered, "
                "reordered or truncated)"
            ) from None


def decrypt_stream(
    key: bytes | KeyLookup, chunks: Iterable[bytes | bytearray | memoryview], aad: Aad
) -> Iterator[bytes]:
    """Decrypt an object read as arbitrary chunks; yields plaintext segment by segment.

    Memory is about one segment plus one input chunk. The output is provisional until the
    iterator ends without raising (see the module docstring on truncation).
    """
    buffer = bytearray()
    opened: _Opened | None = None
    index = 0
    for chunk in chunks:
        buffer += chunk
        if opened is None:
            needed = _header_length(buffer)
            if needed is None or len(buffer) < needed:
                continue
            opened = _Opened(key, bytes(buffer[:needed]), aad)
            del buffer[:needed]
        full = opened.segment_size + TAG_SIZE
        pos = 0
        # A segment of exactly ``full`` bytes may be the last one: keep it until more arrives.
        while len(buffer) - pos > full:
            if index >= MAX_SEGMENTS - 1:
                raise MalformedCiphertext("too many segments")
            yield opened.open(index, memoryview(buffer)[pos : pos + full], last=False)
            index += 1
            pos += full
        del buffer[:pos]
    if opened is None:
        needed = _header_length(buffer)
        if needed is None or len(buffer) < needed:
            raise MalformedCiphertext("truncated ciphertext header")
        opened = _Opened(key, bytes(buffer[:needed]), aad)
        del buffer[:needed]
    yield opened.open(index, buffer, last=True)


def decrypt_range(
    key: bytes | KeyLookup,
    read_at: ReadAt,
    total_size: int,
    aad: Aad,
    start: int,
    length: int,
) -> bytes:
    """Plaintext bytes ``start .. start+length`` of an object of ``total_size`` ciphertext bytes.

    Reads the header and then only the segments covering the range, in one ``read_at`` call
    each. Like slicing, a range past the end is clipped. ``total_size`` must come from the store
    (object length), so a truncated object fails on its new last segment.
    """
    if start < 0 or length < 0:
        raise ValueError("start and length must be non-negative")
    if total_size < _PREFIX:
        raise MalformedCiphertext("truncated ciphertext header")
    head = bytes(read_at(0, min(total_size, _MAX_HEADER)))
    needed = _header_length(head)
    if needed is None or len(head) < needed:
        raise MalformedCiphertext("truncated ciphertext header")
    opened = _Opened(key, head[:needed], aad)
    size = opened.segment_size
    segments, plain_total = _segments_layout(total_size - needed, size)
    end = min(start + length, plain_total)
    if start >= end:
        return b""
    first, last = start // size, (end - 1) // size
    full = size + TAG_SIZE
    offset = needed + first * full
    want = min(total_size, needed + (last + 1) * full) - offset
    data = memoryview(bytes(read_at(offset, want)))
    if len(data) != want:
        raise MalformedCiphertext("short read of ciphertext segments")
    out = bytearray()
    for i in range(first, last + 1):
        piece = data[(i - first) * full : (i - first + 1) * full]
        out += opened.open(i, piece, last=i == segments - 1)
    skip = start - first * size
    return bytes(out[skip : skip + end - start])


def _segments_layout(body_size: int, segment_size: int) -> tuple[int, int]:
    """(segment count, plaintext size) for ``body_size`` bytes of segments; refuses odd sizes."""
    full = segment_size + TAG_SIZE
    if body_size < TAG_SIZE:
        raise MalformedCiphertext("truncated ciphertext")
    count, rest = divmod(body_size, full)
    if rest:
        if rest < TAG_SIZE or (rest == TAG_SIZE and count > 0):
            raise MalformedCiphertext("truncated ciphertext")
        count += 1
    if count > MAX_SEGMENTS:
        raise MalformedCiphertext("too many segments")
    return count, body_size - count * TAG_SIZE


def _header_length(data: bytes | bytearray) -> int | None:
    """The header length announced by the first bytes, None while fewer than 5 are known."""
    if len(data) < _PREFIX:
        if MAGIC[: len(data)] != bytes(data[: len(MAGIC)]):
            raise MalformedCiphertext("not a Callvault segmented ciphertext (bad magic)")
        return None
    if bytes(data[:3]) != MAGIC:
        raise MalformedCiphertext("not a Callvault segmented ciphertext (bad magic)")
    if data[3] != VERSION:
        raise MalformedCiphertext(f"unsupported segmented ciphertext version {data[3]}")
    if data[4] == 0:
        raise MalformedCiphertext("ciphertext has an empty key id")
    return _PREFIX + data[4] + _FIXED


def _parse_header(header: bytes) -> tuple[str, bytes, bytes, int]:
    id_len = header[4]
    raw_id = header[_PREFIX : _PREFIX + id_len]
    if not all(0x21 <= b <= 0x7E for b in raw_id):
        raise MalformedCiphertext("ciphertext key id is not printable ASCII")
    pos = _PREFIX + id_len
    salt = header[pos : pos + SALT_SIZE]
    prefix = header[pos + SALT_SIZE : pos + SALT_SIZE + NONCE_PREFIX_SIZE]
    (segment_size,) = struct.unpack_from(">I", header, pos + SALT_SIZE + NONCE_PREFIX_SIZE)
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise MalformedCiphertext("ciphertext segment size out of range")
    return raw_id.decode("ascii"), salt, prefix, segment_size


def _derive(key: bytes, salt: bytes, aad: Aad) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=HKDF_INFO + aad.encode()
    )
    return hkdf.derive(key)


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if last else 0)


def _check_segment_size(segment_size: int) -> None:
    if not isinstance(segment_size, int) or not (
        MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE
    ):
        raise ValueError(f"segment size must be {MIN_SEGMENT_SIZE}..{MAX_SEGMENT_SIZE} bytes")
