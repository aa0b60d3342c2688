"""G.711 coding (bit-exact with the reference) and WAV reading."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sip_ingest.media.errors import WavFormatError
from sip_ingest.media.rtp import parse_rtp
from sip_ingest.media.wav import (
    decode_g711,
    encode_g711,
    read_wav,
    rtp_packets,
    sine_pcm16,
    wav_to_g711,
    write_wav,
)

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))


def _audioop() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:  # Python 3.13+
            pytest.skip("audioop is gone on this Python")
    return audioop


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_encoder_is_bit_exact_with_audioop(codec: str) -> None:
    audioop = _audioop()
    ref = (audioop.lin2ulaw if codec == "PCMU" else audioop.lin2alaw)(ALL_SAMPLES.tobytes(), 2)
    assert encode_g711(ALL_SAMPLES, codec) == ref  # type: ignore[arg-type]


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_decoder_is_bit_exact_with_audioop(codec: str) -> None:
    audioop = _audioop()
    ref = (audioop.ulaw2lin if codec == "PCMU" else audioop.alaw2lin)(ALL_CODES, 2)
    assert decode_g711(ALL_CODES, codec).astype("<i2").tobytes() == ref  # type: ignore[arg-type]


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_decode_then_encode_is_identity(codec: str) -> None:
    decoded = decode_g711(ALL_CODES, codec)  # type: ignore[arg-type]
    again = encode_g711(decoded, codec)  # type: ignore[arg-type]
    if codec == "PCMU":
        # mu-law has two zeros (0x7F = -0, 0xFF = +0); both decode to 0 and encode to +0
        assert again == ALL_CODES.replace(b"\x7f", b"\xff")
    else:
        assert again == ALL_CODES


def test_encode_accepts_little_endian_bytes() -> None:
    pcm = sine_pcm16(1000, 20)
    assert encode_g711(pcm.astype("<i2").tobytes(), "PCMU") == encode_g711(pcm, "PCMU")


def test_pcm16_wav_to_g711(tmp_path: Path) -> None:
    pcm = sine_pcm16(440, 500)
    write_wav(tmp_path / "a.wav", pcm)
    info = read_wav(tmp_path / "a.wav")
    assert (info.encoding, info.sample_rate, info.channels) == ("pcm16", 8000, 1)
    assert wav_to_g711(tmp_path / "a.wav", "PCMA") == encode_g711(pcm, "PCMA")
    assert len(wav_to_g711(tmp_path / "a.wav")) == 4000


def test_g711_wav_passes_through_and_converts(tmp_path: Path) -> None:
    ulaw = encode_g711(sine_pcm16(300, 100), "PCMU")
    write_wav(tmp_path / "u.wav", ulaw, encoding="pcmu")
    assert read_wav(tmp_path / "u.wav").encoding == "pcmu"
    assert wav_to_g711(tmp_path / "u.wav", "PCMU") == ulaw
    alaw = wav_to_g711(tmp_path / "u.wav", "PCMA")
    assert alaw == encode_g711(decode_g711(ulaw, "PCMU"), "PCMA")


def _riff(fmt: bytes, data: bytes, *, extra: bytes = b"") -> bytes:
    body = b"WAVE" + extra + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_stereo_is_mixed_down_and_odd_chunks_are_skipped() -> None:
    left = np.full(80, 1000, dtype="<i2")
    right = np.full(80, 3000, dtype="<i2")
    frames = np.stack([left, right], axis=1).tobytes()
    fmt = struct.pack("<HHIIHH", 1, 2, 8000, 32000, 4, 16)
    raw = _riff(fmt, frames, extra=b"LIST" + struct.pack("<I", 3) + b"abc\x00")
    assert wav_to_g711(raw) == encode_g711(np.full(80, 2000, dtype=np.int16), "PCMU")


def test_extensible_float_and_8_bit_formats() -> None:
    floats = np.array([0.0, 0.5, -0.5, 1.0], dtype="<f4")
    guid_float = struct.pack("<H", 3) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 8000, 32000, 4, 32, 22, 32, 4) + guid_float
    audio = read_wav(_riff(fmt, floats.tobytes()))
    assert audio.encoding == "pcm16"
    assert list(audio.mono_pcm16()) == [0, 16384, -16384, 32767]
    fmt8 = struct.pack("<HHIIHH", 1, 1, 8000, 8000, 1, 8)
    assert list(read_wav(_riff(fmt8, bytes([128, 255, 0]))).mono_pcm16()) == [0, 32512, -32768]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not a wav", "RIFF"),
        (_riff(struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16), b"\0\0"), "16000 Hz"),
        (_riff(struct.pack("<HHIIHH", 2, 1, 8000, 4000, 1, 4), b"\0\0"), "format tag 2"),
        (b"RIFF\x04\x00\x00\x00WAVE", "no fmt"),
    ],
)
def test_unusable_wavs_are_refused_clearly(raw: bytes, message: str) -> None:
    with pytest.raises(WavFormatError, match=message):
        wav_to_g711(raw)


def test_rtp_packets() -> None:
    g711 = bytes(range(256)) * 2  # 512 bytes: 3 full packets of 160 + 32
    packets = [parse_rtp(p) for p in rtp_packets(g711, 8, 0xCAFE, 65535, 2**32 - 160)]
    assert len(packets) == 4
    parsed = [p for p in packets if not isinstance(p, str)]
    assert [p.seq for p in parsed] == [65535, 0, 1, 2]
    assert [p.timestamp for p in parsed] == [2**32 - 160, 0, 160, 320]
    assert [p.marker for p in parsed] == [True, False, False, False]
    assert {p.payload_type for p in parsed} == {8}
    assert b"".join(p.payload for p in parsed) == g711
    assert len(rtp_packets(g711, 0, 1, 0, 0, ptime_ms=30)) == 3
