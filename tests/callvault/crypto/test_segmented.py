"""Segmented streaming AEAD: round trips, every kind of tampering, random access, bounded memory."""

from __future__ import annotations

import dataclasses
import os
import tracemalloc
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callvault.crypto.envelope import TAG_SIZE, Aad
from callvault.crypto.errors import DecryptionFailed, MalformedCiphertext
from callvault.crypto.segmented import (
    DEFAULT_SEGMENT_SIZE,
    MAGIC,
    Encryptor,
    ciphertext_size,
    decrypt_range,
    decrypt_stream,
    header_size,
    plaintext_size,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
KEY_ID = "ck-rec-1"
AAD = Aad(workspace_id="ws-1", call_id="call-1", kind="recording", region="eu")
SEG = 256  # small segments: many boundaries for cheap


def encrypt(data: bytes, *, segment_size: int = SEG, piece: int = 1000, key: bytes = KEY) -> bytes:
    enc = Encryptor(key, KEY_ID, AAD, segment_size=segment_size)
    out = [enc.update(data[i : i + piece]) for i in range(0, len(data), piece)]
    out.append(enc.finalize())
    return b"".join(out)


def decrypt(blob: bytes, *, aad: Aad = AAD, chunk: int = 777, key: bytes = KEY) -> bytes:
    chunks = (blob[i : i + chunk] for i in range(0, len(blob), chunk))
    return b"".join(decrypt_stream(key, chunks, aad))


def segments(blob: bytes, segment_size: int = SEG) -> tuple[bytes, list[bytes]]:
    head = header_size(KEY_ID)
    full = segment_size + TAG_SIZE
    body = blob[head:]
    return blob[:head], [body[i : i + full] for i in range(0, len(body), full)]


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG, 3 * SEG + 5])
@pytest.mark.parametrize("piece", [1, 7, SEG, 5000])
def test_round_trip_small_segments(size: int, piece: int) -> None:
    data = os.urandom(size)
    blob = encrypt(data, piece=piece)
    assert blob[:3] == MAGIC and blob[3] == 1 and blob[4] == len(KEY_ID)
    assert len(blob) == ciphertext_size(size, KEY_ID, SEG)
    assert plaintext_size(len(blob), KEY_ID, SEG) == size
    for chunk in (1, 13, len(blob) or 1):
        assert decrypt(blob, chunk=chunk) == data


@pytest.mark.parametrize(
    "size",
    [0, 1, DEFAULT_SEGMENT_SIZE - 1, DEFAULT_SEGMENT_SIZE, DEFAULT_SEGMENT_SIZE + 1, 5_000_003],
)
def test_round_trip_default_segment_size(size: int) -> None:
    data = os.urandom(size)
    blob = encrypt(data, segment_size=DEFAULT_SEGMENT_SIZE, piece=100_000)
    assert len(blob) == ciphertext_size(size, KEY_ID)
    assert plaintext_size(len(blob), KEY_ID) == size
    assert decrypt(blob, chunk=65_000) == data


def test_single_update_and_finalize_only() -> None:
    data = os.urandom(10 * SEG)
    enc = Encryptor(KEY, KEY_ID, AAD, segment_size=SEG)
    blob = enc.update(data) + enc.finalize()
    assert decrypt(blob) == data
    empty = Encryptor(KEY, KEY_ID, AAD, segment_size=SEG).finalize()
    assert len(empty) == header_size(KEY_ID) + TAG_SIZE
    assert decrypt(empty) == b""
    with pytest.raises(ValueError):
        enc.update(b"x")
    with pytest.raises(ValueError):
        enc.finalize()


def test_update_holds_back_at_most_one_segment() -> None:
    enc = Encryptor(KEY, KEY_ID, AAD, segment_size=SEG)
    written = len(enc.update(b"a" * (5 * SEG)))
    assert written == header_size(KEY_ID) + 4 * (SEG + TAG_SIZE)
    assert enc.update(b"") == b""


def test_two_encryptions_differ() -> None:
    assert encrypt(b"same" * 100) != encrypt(b"same" * 100)


def test_bit_flip_in_every_segment_and_header_fails() -> None:
    blob = encrypt(os.urandom(4 * SEG + 10))
    for pos in [*range(header_size(KEY_ID)), *range(header_size(KEY_ID), len(blob), 97)]:
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        with pytest.raises(DecryptionFailed):
            decrypt(bytes(bad))


def test_truncation_at_every_segment_boundary_fails() -> None:
    blob = encrypt(os.urandom(5 * SEG))
    head, segs = segments(blob)
    for keep in range(len(segs)):
        with pytest.raises(DecryptionFailed):
            decrypt(head + b"".join(segs[:keep]))
    with pytest.raises(DecryptionFailed):
        decrypt(blob[:-1])
    with pytest.raises(MalformedCiphertext):
        decrypt(blob[: header_size(KEY_ID) - 1])


def test_reordering_duplicating_and_appending_fail() -> None:
    blob = encrypt(os.urandom(4 * SEG))
    head, segs = segments(blob)
    swapped = [segs[1], segs[0], *segs[2:]]
    duplicated = [segs[0], *segs]
    last_twice = [*segs, segs[-1]]
    for parts in (swapped, duplicated, last_twice):
        with pytest.raises(DecryptionFailed):
            decrypt(head + b"".join(parts))


def test_splicing_between_objects_of_the_same_key_fails() -> None:
    data = os.urandom(3 * SEG)
    head_a, segs_a = segments(encrypt(data))
    head_b, segs_b = segments(encrypt(data))
    with pytest.raises(DecryptionFailed):
        decrypt(head_a + segs_a[0] + segs_b[1] + segs_a[2])
    with pytest.raises(DecryptionFailed):
        decrypt(head_b + b"".join(segs_a))


@pytest.mark.parametrize("field", ["workspace_id", "call_id", "kind", "region"])
def test_wrong_context_or_key_fails(field: str) -> None:
    blob = encrypt(b"audio" * 200)
    with pytest.raises(DecryptionFailed):
        decrypt(blob, aad=dataclasses.replace(AAD, **{field: "other"}))
    with pytest.raises(DecryptionFailed):
        decrypt(blob, key=OTHER_KEY)
    with pytest.raises(DecryptionFailed):
        decrypt_range(OTHER_KEY, _reader(blob), len(blob), AAD, 0, 10)


def test_key_lookup_gets_the_key_id() -> None:
    blob = encrypt(b"x" * 1000)
    seen: list[str] = []

    def lookup(key_id: str) -> bytes:
        seen.append(key_id)
        return KEY

    assert b"".join(decrypt_stream(lookup, [blob], AAD)) == b"x" * 1000
    assert decrypt_range(lookup, _reader(blob), len(blob), AAD, 10, 5) == b"x" * 5
    assert seen == [KEY_ID, KEY_ID]


@pytest.mark.parametrize(
    "blob", [b"", b"CV", b"XYZ\x01\x01", b"CVS\x02\x01" + b"\0" * 60, b"CVS\x01\x00" + b"\0" * 60]
)
def test_garbage_is_malformed(blob: bytes) -> None:
    with pytest.raises(MalformedCiphertext):
        decrypt(blob)


def test_forged_segment_size_is_refused() -> None:
    blob = bytearray(encrypt(b"x" * 10))
    pos = header_size(KEY_ID) - 4
    blob[pos : pos + 4] = (2**31).to_bytes(4, "big")
    with pytest.raises(MalformedCiphertext):
        decrypt(bytes(blob))


def test_non_canonical_sizes_are_refused() -> None:
    head = header_size(KEY_ID)
    with pytest.raises(MalformedCiphertext):
        plaintext_size(head + SEG + TAG_SIZE + TAG_SIZE, KEY_ID, SEG)  # empty final after full
    with pytest.raises(MalformedCiphertext):
        plaintext_size(head + 5, KEY_ID, SEG)
    with pytest.raises(ValueError):
        ciphertext_size(10, KEY_ID, 1)


def _reader(blob: bytes, log: list[tuple[int, int]] | None = None) -> Callable[[int, int], bytes]:
    def read_at(offset: int, size: int) -> bytes:
        if log is not None:
            log.append((offset, size))
        return blob[offset : offset + size]

    return read_at


RANGE_DATA = os.urandom(10 * SEG + 37)
RANGE_BLOB = encrypt(RANGE_DATA)


@settings(max_examples=200, deadline=None)
@given(start=st.integers(0, len(RANGE_DATA) + 50), length=st.integers(0, 4 * SEG))
def test_random_access_equals_slicing(start: int, length: int) -> None:
    got = decrypt_range(KEY, _reader(RANGE_BLOB), len(RANGE_BLOB), AAD, start, length)
    assert got == RANGE_DATA[start : start + length]


def test_random_access_reads_only_covering_segments() -> None:
    log: list[tuple[int, int]] = []
    decrypt_range(KEY, _reader(RANGE_BLOB, log), len(RANGE_BLOB), AAD, 3 * SEG + 5, 10)
    assert len(log) == 2
    offset, size = log[1]
    assert offset == header_size(KEY_ID) + 3 * (SEG + TAG_SIZE) and size == SEG + TAG_SIZE


def test_random_access_detects_truncation_and_tampering() -> None:
    head, segs = segments(RANGE_BLOB)
    cut = head + b"".join(segs[:4])
    with pytest.raises(DecryptionFailed):
        decrypt_range(KEY, _reader(cut), len(cut), AAD, 3 * SEG, 10)
    bad = bytearray(RANGE_BLOB)
    bad[len(head) + 2 * (SEG + TAG_SIZE) + 3] ^= 0x80
    with pytest.raises(DecryptionFailed):
        decrypt_range(KEY, _reader(bytes(bad)), len(bad), AAD, 2 * SEG, 1)
    short = len(RANGE_BLOB) - 1  # a wrong total size breaks the segment the range ends in
    with pytest.raises(DecryptionFailed):
        decrypt_range(KEY, _reader(RANGE_BLOB), short, AAD, len(RANGE_DATA) - 5, 5)
    with pytest.raises(MalformedCiphertext):
        decrypt_range(KEY, _reader(RANGE_BLOB), header_size(KEY_ID) + 3, AAD, 0, 1)


def test_repr_never_shows_keys() -> None:
    enc = Encryptor(KEY, KEY_ID, AAD, segment_size=SEG)
    text = repr(enc)
    assert KEY_ID in text
    assert KEY.hex() not in text and repr(KEY) not in text and str(list(KEY)) not in text


def test_memory_is_bounded_for_100_mb() -> None:
    total = 100 * 1024 * 1024
    piece = os.urandom(8 * 1024)

    def ciphertext() -> Iterator[bytes]:
        enc = Encryptor(KEY, KEY_ID, AAD)
        for _ in range(total // len(piece)):
            out = enc.update(piece)
            if out:
                yield out
        yield enc.finalize()

    def rechunk(chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:  # decrypt side also reads 8 KB at a time
            for i in range(0, len(chunk), 8 * 1024):
                yield chunk[i : i + 8 * 1024]

    tracemalloc.start()
    try:
        n = sum(len(p) for p in decrypt_stream(KEY, rechunk(ciphertext()), AAD))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == total
    assert peak < 2 * 1024 * 1024, peak
