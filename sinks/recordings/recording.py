"""Rebuild a call's stereo recording from its decrypted audio chunks and encode it as MP3.

Input: chunk mappings shaped like ``SealedAudioChunk`` with the payload decrypted -- ``leg``
(CALLER or AGENT), ``seq``, ``rtp_timestamp`` (u32), ``captured_at`` (aware datetime), ``codec``
(PCMU or PCMA), ``sample_rate`` (8000) and ``payload`` (G.711 bytes). Output: MP3 at 64 kbit/s,
8 kHz, left channel = caller, right channel = agent; a leg that never appears is silence.

Placement. Each leg is laid out on its RTP clock (:class:`~sinks.recordings.timeline.LegTimeline`:
duplicate seqs dropped, gaps filled with silence, u32 wrap handled). The two legs are aligned on
wall clock by the ``captured_at`` of their first chunks: the timeline starts at the earlier one
and the later-starting leg gets leading silence.

Order assumption and memory bound. Chunks of a leg arrive in seq order (a seq at or below the
last one seen is a duplicate and ignored, which makes re-processing idempotent); the two legs are
interleaved roughly in capture order, as on the ``sealed.audio`` topic keyed by call. Audio is
encoded in blocks of ``block_s`` as soon as both legs reached them. When one leg runs ahead of the
other by more than ``max_skew_s`` (or the other leg has not appeared yet), the builder stops
waiting: it encodes the leading leg up to ``max_skew_s`` behind its end, with silence on the
lagging leg for that stretch; lagging audio that arrives later for already-encoded time is
dropped and counted in ``dropped_samples``. The origin (the earlier of the two legs' starts) is
fixed when both legs have appeared, or when the first leg is ``max_skew_s`` long alone; a leg that
appears later but claims an earlier start loses the audio before the origin. Memory is therefore
about ``max_skew_s`` of 16-bit audio per leg plus one block, whatever the call's length.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Final

import numpy as np

from sinks.recordings.g711 import decode
from sinks.recordings.mp3 import BIT_RATE_KBPS, Mp3Encoder
from sinks.recordings.timeline import SAMPLE_RATE, LegTimeline

__all__ = ["LEGS", "RecordingBuilder", "iter_mp3"]

LEGS: Final = ("CALLER", "AGENT")


class RecordingBuilder:
    """Streaming call recording: ``add`` chunks, collect ``take_mp3()``, end with ``finish()``."""

    def __init__(
        self,
        *,
        max_skew_s: float = 20.0,
        block_s: float = 1.0,
        resync_s: float = 2.0,
        bit_rate_kbps: int = BIT_RATE_KBPS,
        quality: int = 2,
    ) -> None:
        if max_skew_s < 0 or block_s <= 0:
            raise ValueError("max_skew_s must be >= 0 and block_s > 0")
        self.max_skew = round(max_skew_s * SAMPLE_RATE)
        self.block = max(1, round(block_s * SAMPLE_RATE))
        self.legs = {
            leg: LegTimeline(leg, resync_samples=round(resync_s * SAMPLE_RATE)) for leg in LEGS
        }
        self._encoder = Mp3Encoder(bit_rate_kbps=bit_rate_kbps, quality=quality)
        self._origin: datetime | None = None
        self._offsets: dict[str, int] = {}
        self._emitted = 0
        self._finished = False

    def __repr__(self) -> str:
        return f"RecordingBuilder(duration_s={self.duration_s:.3f}, finished={self._finished})"

    @property
    def duration_s(self) -> float:
        """Seconds of audio encoded so far; the recording's duration once ``finish`` returned."""
        return self._emitted / SAMPLE_RATE

    @property
    def duplicates(self) -> int:
        return sum(leg.duplicates for leg in self.legs.values())

    @property
    def dropped_samples(self) -> int:
        return sum(leg.dropped_samples for leg in self.legs.values())

    def add(self, chunk: Mapping[str, Any]) -> None:
        """Place one decrypted chunk (see the module docstring for the fields)."""
        if self._finished:
            raise ValueError("recording already finished")
        leg_name = chunk["leg"]
        if leg_name not in self.legs:
            raise ValueError(f"unknown leg {leg_name!r}")
        if chunk.get("sample_rate", SAMPLE_RATE) != SAMPLE_RATE:
            raise ValueError(f"unsupported sample rate {chunk['sample_rate']} (8000 only)")
        captured_at = chunk["captured_at"]
        if not isinstance(captured_at, datetime) or captured_at.utcoffset() is None:
            raise ValueError("captured_at must be a timezone-aware datetime")
        pcm = decode(chunk["payload"], chunk["codec"])
        leg = self.legs[leg_name]
        leg.add(int(chunk["seq"]), int(chunk["rtp_timestamp"]), captured_at, pcm)
        if self._origin is not None and leg_name not in self._offsets:
            self._offsets[leg_name] = self._offset_of(leg)

    def take_mp3(self) -> bytes:
        """Encode every full block that is ready; returns the MP3 bytes produced (maybe none)."""
        if self._finished:
            return b""
        self._fix_origin(final=False)
        if self._origin is None:
            return b""
        ready = self._ready_until()
        out = bytearray()
        while self._emitted + self.block <= ready:
            out += self._emit(self.block)
        return bytes(out)

    def finish(self) -> bytes:
        """Encode the rest (the longer leg's end) and flush the encoder; b"" for no audio."""
        if self._finished:
            return b""
        self._fix_origin(final=True)
        out = bytearray()
        if self._origin is not None:
            end = max(self._offsets[name] + leg.end for name, leg in self.legs.items() if leg.seen)
            while self._emitted < end:
                out += self._emit(min(self.block, end - self._emitted))
        if self._emitted:
            out += self._encoder.flush()
        self._finished = True
        return bytes(out)

    def _fix_origin(self, *, final: bool) -> None:
        if self._origin is not None:
            return
        seen = [leg for leg in self.legs.values() if leg.seen]
        if not seen:
            return
        alone_too_long = any(leg.end > self.max_skew for leg in seen)
        if len(seen) == len(self.legs) or alone_too_long or final:
            self._origin = min(leg.first_captured_at for leg in seen if leg.first_captured_at)
            for leg in seen:
                self._offsets[leg.leg] = self._offset_of(leg)

    def _offset_of(self, leg: LegTimeline) -> int:
        assert self._origin is not None and leg.first_captured_at is not None
        return round((leg.first_captured_at - self._origin).total_seconds() * SAMPLE_RATE)

    def _ready_until(self) -> int:
        ends = [
            self._offsets[name] + leg.end if name in self._offsets else self._emitted
            for name, leg in self.legs.items()
        ]
        return max(min(ends), max(ends) - self.max_skew)

    def _emit(self, n: int) -> bytes:
        left, right = (
            self.legs[name].take(self._emitted - self._offsets[name], n)
            if name in self._offsets
            else np.zeros(n, dtype=np.int16)
            for name in LEGS
        )
        self._emitted += n
        return self._encoder.encode(left, right)


def iter_mp3(chunks: Iterable[Mapping[str, Any]], **options: Any) -> Iterator[bytes]:
    """MP3 bytes of a call as they are produced; ``options`` go to :class:`RecordingBuilder`."""
    builder = RecordingBuilder(**options)
    for chunk in chunks:
        builder.add(chunk)
        out = builder.take_mp3()
        if out:
            yield out
    out = builder.finish()
    if out:
        yield out
