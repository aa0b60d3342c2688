"""SDES key handling and the SRTP wrapper's contract: drops are counted, never raised."""

from __future__ import annotations

import base64

import pytest

from sip_ingest.media.errors import MediaError, SrtpKeyError
from sip_ingest.media.rtp import build_rtp, parse_rtp
from sip_ingest.media.srtp import (
    MASTER_LEN,
    SrtpReceiver,
    SrtpSender,
    master_key_from_sdes,
    new_master_key,
    sdes_inline,
)


def test_sdes_inline_round_trip() -> None:
    key = new_master_key()
    assert len(key) == MASTER_LEN == 30
    inline = sdes_inline(key)
    assert inline.startswith("inline:")
    assert master_key_from_sdes(inline) == key
    assert master_key_from_sdes(inline + "|2^31") == key  # lifetime is accepted and ignored


@pytest.mark.parametrize(
    "params",
    [
        "",
        "uri:https://example.invalid/key",
        "inline:not base64!!",
        "inline:" + base64.b64encode(b"short").decode(),
        "inline:" + base64.b64encode(bytes(30)).decode() + "|2^20|1:4",  # MKI
    ],
)
def test_bad_sdes_keys_are_refused(params: str) -> None:
    with pytest.raises(SrtpKeyError) as info:
        master_key_from_sdes(params)
    assert isinstance(info.value, MediaError)


def test_bad_master_key_or_suite() -> None:
    with pytest.raises(SrtpKeyError):
        SrtpReceiver(b"x" * 29)
    with pytest.raises(SrtpKeyError):
        SrtpSender(new_master_key(), "AES_256_CM_HMAC_SHA1_80")  # type: ignore[arg-type]


@pytest.mark.parametrize("suite", ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"])
def test_protect_unprotect_and_counted_failures(suite: str) -> None:
    key = new_master_key()
    tx, rx = SrtpSender(key, suite), SrtpReceiver(key, suite)  # type: ignore[arg-type]
    plain = build_rtp(0, 1, 160, 0xABC, b"\x7f" * 160)
    protected = tx.protect(plain)
    assert len(protected) == len(plain) + (10 if suite.endswith("80") else 4)
    assert protected[12:172] != plain[12:172]  # payload encrypted
    assert rx.unprotect(protected) == plain
    assert rx.unprotect(protected) is None  # replay
    tampered = bytearray(tx.protect(build_rtp(0, 2, 320, 0xABC, b"\x7f" * 160)))
    tampered[-1] ^= 0xFF
    assert rx.unprotect(bytes(tampered)) is None
    assert rx.unprotect(b"\x80\x00") is None
    assert rx.unprotect(b"\x80" + bytes(2000)) is None
    assert rx.failures == {
        "srtp_replay": 1,
        "srtp_auth": 1,
        "srtp_error": 1,
        "srtp_oversize": 1,
    }


def test_a_new_ssrc_under_the_same_key_is_accepted() -> None:
    key = new_master_key()
    tx, rx = SrtpSender(key), SrtpReceiver(key)
    for ssrc in (1, 2):
        out = rx.unprotect(tx.protect(build_rtp(0, 5, 800, ssrc, b"a" * 160)))
        assert out is not None
        pkt = parse_rtp(out)
        assert not isinstance(pkt, str) and pkt.ssrc == ssrc
