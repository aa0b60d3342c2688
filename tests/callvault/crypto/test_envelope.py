"""The ciphertext format: round trips, binding to the context, only crypto errors on bad input."""

from __future__ import annotations

import dataclasses
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callvault.crypto.envelope import (
    MAGIC,
    NONCE_SIZE,
    TAG_SIZE,
    Aad,
    canonical_fields,
    overhead,
    peek_key_id,
    seal,
    unseal,
)
from callvault.crypto.errors import CryptoError, DecryptionFailed, MalformedCiphertext

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
AAD = Aad(workspace_id="ws-1", call_id="call-1", kind="transcript", region="eu")

fields = st.text(min_size=1, max_size=40)
aads = st.builds(Aad, workspace_id=fields, call_id=fields, kind=fields, region=fields)
key_ids = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=255
)


def test_round_trip_and_layout():
    blob = seal(KEY, "ck-abc", b"hello", AAD)
    assert blob[:2] == MAGIC == b"CV"
    assert blob[2] == 1
    assert blob[3] == len("ck-abc")
    assert blob[4:10] == b"ck-abc"
    assert len(blob) == 4 + 6 + NONCE_SIZE + len(b"hello") + TAG_SIZE == 5 + overhead("ck-abc")
    assert peek_key_id(blob) == "ck-abc"
    assert unseal(KEY, blob, AAD) == b"hello"


def test_nonces_are_fresh():
    assert seal(KEY, "k", b"same", AAD) != seal(KEY, "k", b"same", AAD)


def test_empty_plaintext():
    assert unseal(KEY, seal(KEY, "k", b"", AAD), AAD) == b""


def test_key_lookup_receives_the_key_id():
    blob = seal(KEY, "ck-1", b"x", AAD)
    asked: list[str] = []

    def lookup(key_id: str) -> bytes:
        asked.append(key_id)
        return KEY

    assert unseal(lookup, blob, AAD) == b"x"
    assert asked == ["ck-1"]


@pytest.mark.parametrize("field", ["workspace_id", "call_id", "kind", "region"])
def test_each_context_field_is_bound(field):
    blob = seal(KEY, "k", b"secret", AAD)
    moved = dataclasses.replace(AAD, **{field: getattr(AAD, field) + "x"})
    with pytest.raises(DecryptionFailed):
        unseal(KEY, blob, moved)


def test_context_encoding_is_unambiguous():
    assert canonical_fields("ab", "c") != canonical_fields("a", "bc")
    a = Aad(workspace_id="ab", call_id="c", kind="k", region="r")
    b = Aad(workspace_id="a", call_id="bc", kind="k", region="r")
    with pytest.raises(DecryptionFailed):
        unseal(KEY, seal(KEY, "k", b"x", a), b)


def test_wrong_key_fails_with_the_same_message_as_wrong_context():
    blob = seal(KEY, "k", b"x", AAD)
    with pytest.raises(DecryptionFailed) as wrong_key:
        unseal(OTHER_KEY, blob, AAD)
    with pytest.raises(DecryptionFailed) as wrong_aad:
        unseal(KEY, blob, dataclasses.replace(AAD, region="na"))
    assert str(wrong_key.value) == str(wrong_aad.value)
    assert type(wrong_key.value) is type(wrong_aad.value) is DecryptionFailed


@pytest.mark.parametrize(
    "blob",
    [b"", b"C", b"CV", b"CV\x01", b"XX\x01\x01k" + bytes(40), b"CV\x02\x01k" + bytes(40),
     b"CV\x01\x00" + bytes(40), b"CV\x01\x01\x00" + bytes(40), b"CV\x01\x05abc"],
)  # fmt: skip
def test_malformed_blobs(blob):
    with pytest.raises(MalformedCiphertext):
        unseal(KEY, blob, AAD)
    with pytest.raises(MalformedCiphertext):
        peek_key_id(blob)


def test_truncated_blob_is_malformed_or_unauthentic():
    blob = seal(KEY, "ck-1", b"payload", AAD)
    for n in range(len(blob)):
        with pytest.raises(DecryptionFailed):
            unseal(KEY, blob[:n], AAD)


def test_invalid_arguments_to_seal_are_programming_errors():
    with pytest.raises(ValueError, match="32 bytes"):
        seal(b"short", "k", b"x", AAD)
    for bad_id in ["", "a b", "é", "k" * 256]:
        with pytest.raises(ValueError, match="key id"):
            seal(KEY, bad_id, b"x", AAD)
    with pytest.raises(ValueError, match="kind"):
        Aad(workspace_id="w", call_id="c", kind="", region="eu")


def test_extra_bytes_fail_authentication():
    blob = seal(KEY, "k", b"x", AAD)
    with pytest.raises(DecryptionFailed):
        unseal(KEY, blob + b"\x00", AAD)


def test_flipping_every_byte_position_fails():
    blob = seal(KEY, "ck-1", b"some plaintext", AAD)
    for pos in range(len(blob)):
        for mask in (0x01, 0x80, 0xFF):
            tampered = bytearray(blob)
            tampered[pos] ^= mask
            with pytest.raises(DecryptionFailed):
                unseal(KEY, bytes(tampered), AAD)


@settings(max_examples=300)
@given(plaintext=st.binary(max_size=2048), aad=aads, key_id=key_ids)
def test_round_trip_property(plaintext, aad, key_id):
    key = os.urandom(32)
    blob = seal(key, key_id, plaintext, aad)
    assert peek_key_id(blob) == key_id
    assert unseal(key, blob, aad) == plaintext


@settings(max_examples=500)
@given(data=st.data(), plaintext=st.binary(max_size=64))
def test_flipping_any_bit_of_any_byte_fails(data, plaintext):
    blob = bytearray(seal(KEY, "ck-0123456789abcdef", plaintext, AAD))
    pos = data.draw(st.integers(0, len(blob) - 1), label="position")
    blob[pos] ^= data.draw(st.integers(1, 255), label="xor")
    with pytest.raises(DecryptionFailed) as failure:
        unseal(KEY, bytes(blob), AAD)
    if pos >= 4 + len("ck-0123456789abcdef"):  # nonce, ciphertext, tag: the header still parses
        assert type(failure.value) is DecryptionFailed


@settings(max_examples=1000)
@given(blob=st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_crypto_errors(blob):
    with pytest.raises(CryptoError):
        unseal(KEY, blob, AAD)


@settings(max_examples=500)
@given(tail=st.binary(max_size=200), id_len=st.integers(0, 255), version=st.integers(0, 255))
def test_plausible_headers_raise_only_crypto_errors(tail, id_len, version):
    blob = MAGIC + bytes((version, id_len)) + tail
    with pytest.raises(DecryptionFailed):
        unseal(KEY, blob, AAD)
    if len(blob) < 4 + max(id_len, 1) + 12 + 16 or version != 1:
        with pytest.raises(MalformedCiphertext):
            peek_key_id(blob)
