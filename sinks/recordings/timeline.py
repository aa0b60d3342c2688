"""One leg's audio on its own media clock, as a bounded queue of samples.

A leg is placed by the RTP timestamps of its chunks relative to its first chunk: 32-bit
timestamps are unwrapped (a step is read as signed, so a wrap moves forward and a small step back
moves back), a gap between chunks becomes silence, and an overlap (a chunk that starts before the
previous one ended) loses its overlapping start. Lost packets inside a chunk shorten the chunk
without saying where (see ``sip_ingest.media.leg``), so their silence lands at the chunk's end,
where the next chunk's timestamp puts the audio back in place.

RTP timestamps are only trusted while they agree with the wall clock: when a chunk's RTP position
and its ``captured_at`` position differ by more than ``resync_samples`` (a new SSRC with a new
random timestamp base, a restarted endpoint), the chunk is placed by wall clock and later chunks
are measured from it. That also bounds any gap by real elapsed time.

Silence is stored as a count, not as samples, so a long hold costs nothing until it is played.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["SAMPLE_RATE", "LegTimeline", "unwrap_rtp"]

SAMPLE_RATE: Final = 8000
_WRAP: Final = 2**32
_HALF: Final = 2**31


def unwrap_rtp(previous_raw: int, previous_extended: int, raw: int) -> int:
    """Extended timestamp of ``raw`` after the previous one (steps of up to 2**31 either way)."""
    step = (raw - previous_raw + _HALF) % _WRAP - _HALF
    return previous_extended + step


class LegTimeline:
    """Samples of one leg from local position ``cursor`` (0 = its first chunk's first sample)."""

    def __init__(self, leg: str, *, resync_samples: int = 2 * SAMPLE_RATE) -> None:
        self.leg = leg
        self.resync_samples = resync_samples
        self.first_captured_at: datetime | None = None
        self.duplicates = 0
        self.dropped_samples = 0
        """Audio samples discarded: overlaps, and audio arriving for time already encoded."""
        self.resyncs = 0
        self._last_seq: int | None = None
        self._last_raw = 0
        self._last_ext = 0
        self._anchor_ext = 0
        self._anchor_pos = 0
        self._cursor = 0
        self._end = 0
        self._pending: deque[npt.NDArray[np.int16] | int] = deque()

    def __repr__(self) -> str:
        return f"LegTimeline({self.leg!r}, cursor={self._cursor}, end={self._end})"

    @property
    def seen(self) -> bool:
        return self.first_captured_at is not None

    @property
    def end(self) -> int:
        """Local position just after the last placed sample."""
        return self._end

    @property
    def buffered(self) -> int:
        """Samples (audio and silence) waiting to be taken."""
        return self._end - self._cursor

    def add(
        self, seq: int, rtp_timestamp: int, captured_at: datetime, pcm: npt.NDArray[np.int16]
    ) -> bool:
        """Place one chunk; returns False for a chunk at or below the last seq (a duplicate)."""
        if self._last_seq is not None and seq <= self._last_seq:
            self.duplicates += 1
            return False
        raw = rtp_timestamp % _WRAP
        if self.first_captured_at is None:
            self.first_captured_at = captured_at
            ext = raw
            self._anchor_ext, self._anchor_pos = raw, 0
            pos = 0
        else:
            ext = unwrap_rtp(self._last_raw, self._last_ext, raw)
            pos = self._anchor_pos + (ext - self._anchor_ext)
            wall = round((captured_at - self.first_captured_at).total_seconds() * SAMPLE_RATE)
            if abs(pos - wall) > self.resync_samples:
                self.resyncs += 1
                pos = wall
                self._anchor_ext, self._anchor_pos = ext, wall
        self._last_seq, self._last_raw, self._last_ext = seq, raw, ext
        self._place(pos, pcm)
        return True

    def _place(self, pos: int, pcm: npt.NDArray[np.int16]) -> None:
        if pos < self._end:
            overlap = min(self._end - pos, len(pcm))
            self.dropped_samples += overlap
            pcm = pcm[overlap:]
            pos = self._end
        if not len(pcm):
            return
        if pos > self._end:
            self._pending.append(pos - self._end)
        self._pending.append(pcm)
        self._end = pos + len(pcm)

    def take(self, start: int, n: int) -> npt.NDArray[np.int16]:
        """Samples ``start .. start+n`` (local positions); silence where the leg has none.

        Everything before ``start + n`` is then gone: audio placed there later is dropped.
        """
        out = np.zeros(n, dtype=np.int16)
        if start > self._cursor:
            self._discard(start - self._cursor)
        write = self._cursor - start
        while write < n and self._pending:
            item = self._pending[0]
            size = item if isinstance(item, int) else len(item)
            use = min(size, n - write)
            if not isinstance(item, int):
                out[write : write + use] = item[:use]
            self._consume(use)
            write += use
        self._cursor = max(self._cursor, start + n)
        self._end = max(self._end, self._cursor)
        return out

    def _discard(self, count: int) -> None:
        while count and self._pending:
            item = self._pending[0]
            size = item if isinstance(item, int) else len(item)
            use = min(size, count)
            if not isinstance(item, int):
                self.dropped_samples += use
            self._consume(use)
            count -= use
        self._cursor += count

    def _consume(self, count: int) -> None:
        item = self._pending[0]
        size = item if isinstance(item, int) else len(item)
        if count >= size:
            self._pending.popleft()
        elif isinstance(item, int):
            self._pending[0] = item - count
        else:
            self._pending[0] = item[count:]
        self._cursor += count
