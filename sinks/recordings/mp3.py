"""MP3 encoding (lameenc) and a small MPEG audio frame-header parser.

The encoder is fixed to what recordings need: 8 kHz input, two channels (left = caller,
right = agent), constant 64 kbit/s. At 8 kHz LAME writes MPEG-2.5 Layer III frames of 576 samples
(72 ms, 576 bytes at 64 kbit/s). LAME adds its usual encoder delay of
:data:`LAME_ENCODER_DELAY` samples at the start and pads the last frame.

The parser reads frame headers only (no decoding): enough to check a file's format and compute
its duration without an MP3 decoder in the dependencies.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import lameenc  # type: ignore[import-not-found, unused-ignore]
import numpy as np
import numpy.typing as npt

__all__ = [
    "BIT_RATE_KBPS",
    "LAME_ENCODER_DELAY",
    "SAMPLE_RATE",
    "FrameHeader",
    "Mp3Encoder",
    "iter_frames",
]

SAMPLE_RATE: Final = 8000
BIT_RATE_KBPS: Final = 64
LAME_ENCODER_DELAY: Final = 576 + 529
"""Samples of silence LAME puts before the audio (decoders that read no LAME tag play them)."""

_VERSIONS: Final = {0: "2.5", 2: "2", 3: "1"}
_LAYERS: Final = {1: 3, 2: 2, 3: 1}
_RATES: Final = {
    "1": (44100, 48000, 32000),
    "2": (22050, 24000, 16000),
    "2.5": (11025, 12000, 8000),
}
_BITRATES_V1_L3: Final = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_BITRATES_V2_L3: Final = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_MODES: Final = ("stereo", "joint_stereo", "dual_channel", "mono")


class Mp3Encoder:
    """Stereo PCM16 at 8 kHz in, constant-bit-rate MP3 bytes out, incrementally."""

    def __init__(self, *, bit_rate_kbps: int = BIT_RATE_KBPS, quality: int = 2) -> None:
        self._encoder = lameenc.Encoder()
        self._encoder.set_bit_rate(bit_rate_kbps)
        self._encoder.set_in_sample_rate(SAMPLE_RATE)
        self._encoder.set_channels(2)
        self._encoder.set_quality(quality)

    def encode(self, left: npt.NDArray[np.int16], right: npt.NDArray[np.int16]) -> bytes:
        """Encode equal-length left and right sample blocks; returns the frames completed."""
        if len(left) != len(right):
            raise ValueError("both channels need the same number of samples")
        frames = np.empty((len(left), 2), dtype="<i2")
        frames[:, 0] = left
        frames[:, 1] = right
        return bytes(self._encoder.encode(frames.tobytes()))

    def flush(self) -> bytes:
        return bytes(self._encoder.flush())


@dataclass(frozen=True, slots=True)
class FrameHeader:
    offset: int
    version: str
    """"1", "2" or "2.5" (MPEG-2.5 is the 8/11.025/12 kHz extension)."""
    layer: int
    bit_rate_kbps: int
    sample_rate: int
    channel_mode: str
    length: int
    """Frame length in bytes, header included."""
    samples: int
    """Samples per channel in the frame."""


def iter_frames(data: bytes) -> Iterator[FrameHeader]:
    """Walk the Layer III frames of ``data`` from its first byte; raises on anything else.

    Free-format and reserved headers are refused; an ID3v2 tag at the start is skipped.
    """
    pos = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        size = 0
        for b in data[6:10]:
            size = (size << 7) | (b & 0x7F)
        pos = 10 + size
    while pos < len(data):
        if len(data) - pos < 4:
            raise ValueError(f"truncated frame header at {pos}")
        h = int.from_bytes(data[pos : pos + 4], "big")
        if h >> 21 != 0x7FF:
            raise ValueError(f"no frame sync at {pos}")
        version = _VERSIONS.get((h >> 19) & 3)
        layer = _LAYERS.get((h >> 17) & 3)
        br_index, sr_index = (h >> 12) & 0xF, (h >> 10) & 3
        if version is None or layer != 3 or br_index in (0, 15) or sr_index == 3:
            raise ValueError(f"unsupported or reserved frame header at {pos}")
        table = _BITRATES_V1_L3 if version == "1" else _BITRATES_V2_L3
        bit_rate = table[br_index]
        rate = _RATES[version][sr_index]
        padding = (h >> 9) & 1
        samples = 1152 if version == "1" else 576
        length = samples // 8 * bit_rate * 1000 // rate + padding
        if pos + length > len(data):
            raise ValueError(f"truncated frame at {pos}")
        yield FrameHeader(
            pos, version, layer, bit_rate, rate, _MODES[(h >> 6) & 3], length, samples
        )
        pos += length
