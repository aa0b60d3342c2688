"""WAV input and G.711 (PCMU/PCMA) coding without ``audioop``.

``audioop`` is deprecated in 3.11 and removed in 3.13, and ``audioop-lts`` only installs on 3.13+,
so the codec is numpy table look-ups: the encoder is a 65 536-entry table over every 16-bit sample
(built once, ~0.1 MB per law) and the decoder a 256-entry table. The tables are computed from the
ITU-T G.711 segment rules as in the reference ``g711.c``, so results are bit-identical to
``audioop.lin2ulaw``/``lin2alaw``/``ulaw2lin``/``alaw2lin`` (the tests compare them while
``audioop`` still exists).

The WAV reader is a small RIFF walker rather than the ``wave`` module because ``wave`` refuses
mu-law and A-law files -- the very files operators have for telephony. A file already in the
requested law is passed through byte for byte, so what the test client sends is exactly the file.
"""

from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from sip_ingest.media.errors import WavFormatError
from sip_ingest.media.leg import Codec
from sip_ingest.media.rtp import CLOCK_RATE, build_rtp

__all__ = [
    "Pcm16",
    "WavAudio",
    "WavEncoding",
    "decode_g711",
    "encode_g711",
    "read_wav",
    "rtp_packets",
    "sine_pcm16",
    "wav_to_g711",
    "write_wav",
]

WavEncoding = Literal["pcm16", "pcmu", "pcma"]
Pcm16 = npt.NDArray[np.int16]

_FORMAT_PCM: Final = 1
_FORMAT_FLOAT: Final = 3
_FORMAT_ALAW: Final = 6
_FORMAT_MULAW: Final = 7
_FORMAT_EXTENSIBLE: Final = 0xFFFE
_ENCODING_OF_CODEC: Final[dict[str, WavEncoding]] = {"PCMU": "pcmu", "PCMA": "pcma"}


# ------------------------------------------------------------------------------------------
# G.711


def _all_int16() -> npt.NDArray[np.int32]:
    """Every 16-bit sample, ordered by its unsigned bit pattern (the encoder tables' index)."""
    return np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)


@functools.cache
def _ulaw_encoder() -> npt.NDArray[np.uint8]:
    v = _all_int16() >> 2
    mask = np.where(v < 0, 0x7F, 0xFF)
    v = np.minimum(np.abs(v), 8159) + 0x21
    seg = np.searchsorted(np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]), v)
    code = (seg << 4) | ((v >> (np.minimum(seg, 7) + 1)) & 0xF)
    return np.where(seg >= 8, 0x7F ^ mask, code ^ mask).astype(np.uint8)


@functools.cache
def _alaw_encoder() -> npt.NDArray[np.uint8]:
    v = _all_int16() >> 3
    mask = np.where(v >= 0, 0xD5, 0x55)
    v = np.where(v >= 0, v, -v - 1)
    seg = np.searchsorted(np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF]), v)
    quant = np.where(seg < 2, v >> 1, v >> np.minimum(seg, 7)) & 0xF
    return np.where(seg >= 8, 0x7F ^ mask, ((seg << 4) | quant) ^ mask).astype(np.uint8)


@functools.cache
def _ulaw_decoder() -> Pcm16:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


@functools.cache
def _alaw_decoder() -> Pcm16:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


def encode_g711(pcm: Pcm16 | bytes, codec: Codec) -> bytes:
    """16-bit linear PCM (native-endian array, or little-endian bytes) to G.711."""
    samples = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes) else pcm
    table = _ulaw_encoder() if codec == "PCMU" else _alaw_encoder()
    return table[samples.astype(np.int16, copy=False).view(np.uint16)].tobytes()


def decode_g711(data: bytes | bytearray | memoryview, codec: Codec) -> Pcm16:
    """G.711 bytes to 16-bit linear samples (for tests, tone checks and the MP3 sink)."""
    table = _ulaw_decoder() if codec == "PCMU" else _alaw_decoder()
    return table[np.frombuffer(data, dtype=np.uint8)]


def sine_pcm16(freq_hz: float, duration_ms: int, *, amplitude: float = 0.3) -> Pcm16:
    """A test tone at 8 kHz, for demos and tests that need audio without a file."""
    n = duration_ms * CLOCK_RATE // 1000
    t = np.arange(n, dtype=np.float64) / CLOCK_RATE
    return (np.sin(2 * np.pi * freq_hz * t) * amplitude * 32767).astype(np.int16)


# ------------------------------------------------------------------------------------------
# WAV


@dataclass(frozen=True, slots=True)
class WavAudio:
    """The sample data of a WAV file, not yet converted."""

    encoding: WavEncoding
    sample_rate: int
    channels: int
    data: bytes
    """Interleaved frames: little-endian int16 for ``pcm16``, one byte per sample for G.711."""

    def mono_pcm16(self) -> Pcm16:
        if self.encoding == "pcm16":
            samples = np.frombuffer(self.data, dtype="<i2").astype(np.int16)
        else:
            samples = decode_g711(self.data, "PCMU" if self.encoding == "pcmu" else "PCMA")
        if self.channels > 1:
            usable = len(samples) - len(samples) % self.channels
            frames = samples[:usable].reshape(-1, self.channels).astype(np.int32)
            samples = frames.mean(axis=1).round().astype(np.int16)
        return samples


def read_wav(source: str | os.PathLike[str] | bytes) -> WavAudio:
    """Parse a RIFF/WAVE file: PCM 8/16-bit, float32, mu-law or A-law, any channel count."""
    raw = source if isinstance(source, bytes) else Path(source).read_bytes()
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise WavFormatError("not a RIFF/WAVE file")
    fmt: tuple[int, int, int, int] | None = None
    data: bytes | None = None
    pos = 12
    while pos + 8 <= len(raw):
        chunk_id = raw[pos : pos + 4]
        (size,) = struct.unpack_from("<I", raw, pos + 4)
        body = raw[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            if len(body) < 16:
                raise WavFormatError("truncated fmt chunk")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _FORMAT_EXTENSIBLE:
                if len(body) < 26:
                    raise WavFormatError("truncated WAVE_FORMAT_EXTENSIBLE fmt chunk")
                (tag,) = struct.unpack_from("<H", body, 24)  # first field of the SubFormat GUID
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            data = body  # a data chunk cut short by a crashed recorder is still usable
        pos += 8 + size + (size & 1)
    if fmt is None or data is None:
        raise WavFormatError("WAV file has no fmt or no data chunk")
    tag, channels, rate, bits = fmt
    if channels < 1:
        raise WavFormatError("WAV file declares no channels")
    if tag == _FORMAT_PCM and bits == 16:
        return WavAudio("pcm16", rate, channels, data[: len(data) // 2 * 2])
    if tag == _FORMAT_PCM and bits == 8:
        pcm = ((np.frombuffer(data, dtype=np.uint8).astype(np.int16) - 128) << 8).astype("<i2")
        return WavAudio("pcm16", rate, channels, pcm.tobytes())
    if tag == _FORMAT_FLOAT and bits == 32:
        floats = np.frombuffer(data[: len(data) // 4 * 4], dtype="<f4")
        pcm = (np.clip(floats, -1.0, 1.0) * 32767).round().astype("<i2")
        return WavAudio("pcm16", rate, channels, pcm.tobytes())
    if tag in (_FORMAT_MULAW, _FORMAT_ALAW) and bits == 8:
        return WavAudio("pcmu" if tag == _FORMAT_MULAW else "pcma", rate, channels, data)
    raise WavFormatError(f"unsupported WAV encoding (format tag {tag}, {bits} bits per sample)")


def wav_to_g711(source: str | os.PathLike[str] | bytes, codec: Codec = "PCMU") -> bytes:
    """The G.711 bytes to stream for a WAV file: 8 kHz required, channels mixed down.

    A mono file already in ``codec``'s law is returned unchanged. No resampling: a silently
    resampled file would no longer match what the operator thinks they sent; convert with e.g.
    ``sox in.wav -r 8000 -c 1 out.wav``.
    """
    wav = read_wav(source)
    if wav.sample_rate != CLOCK_RATE:
        raise WavFormatError(
            f"WAV is {wav.sample_rate} Hz; G.711 needs {CLOCK_RATE} Hz "
            "(convert it first, e.g. sox in.wav -r 8000 -c 1 out.wav)"
        )
    if wav.channels == 1 and wav.encoding == _ENCODING_OF_CODEC[codec]:
        return wav.data
    return encode_g711(wav.mono_pcm16(), codec)


def write_wav(
    path: str | os.PathLike[str],
    audio: Pcm16 | bytes,
    *,
    encoding: WavEncoding = "pcm16",
    sample_rate: int = CLOCK_RATE,
) -> None:
    """Write mono audio: int16 samples for ``pcm16``, raw G.711 bytes for ``pcmu``/``pcma``."""
    if encoding == "pcm16":
        data = np.asarray(audio, dtype="<i2").tobytes() if not isinstance(audio, bytes) else audio
        tag, bits = _FORMAT_PCM, 16
    else:
        data = bytes(audio) if isinstance(audio, bytes) else np.asarray(audio).tobytes()
        tag, bits = (_FORMAT_MULAW if encoding == "pcmu" else _FORMAT_ALAW), 8
    block = bits // 8
    fmt = struct.pack("<HHIIHH", tag, 1, sample_rate, sample_rate * block, block, bits)
    if tag != _FORMAT_PCM:
        fmt += b"\x00\x00"  # cbSize: non-PCM formats carry it
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if tag != _FORMAT_PCM:
        body += b"fact" + struct.pack("<II", 4, len(data))
    body += b"data" + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) & 1 else b"")
    Path(path).write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


# ------------------------------------------------------------------------------------------
# RTP packetisation


def rtp_packets(
    g711_bytes: bytes,
    payload_type: int,
    ssrc: int,
    start_seq: int,
    start_ts: int,
    ptime_ms: int = 20,
) -> list[bytes]:
    """Cut G.711 into RTP packets of ``ptime_ms`` (the last one may be shorter).

    The marker bit is set on the first packet, as RFC 3551 asks for the start of a talkspurt.
    """
    step = ptime_ms * CLOCK_RATE // 1000
    if step <= 0:
        raise ValueError("ptime_ms too small")
    return [
        build_rtp(
            payload_type,
            start_seq + i,
            start_ts + offset,
            ssrc,
            g711_bytes[offset : offset + step],
            marker=i == 0,
        )
        for i, offset in enumerate(range(0, len(g711_bytes), step))
    ]
