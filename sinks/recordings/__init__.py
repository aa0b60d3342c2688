"""Recording sink: rebuild a call's stereo audio from ``sealed.audio`` chunks and encode MP3.

Pure building blocks, no I/O: :mod:`~sinks.recordings.timeline` places one leg on its media
clock, :mod:`~sinks.recordings.recording` aligns the legs and streams MP3 blocks,
:mod:`~sinks.recordings.mp3` wraps lameenc and parses frame headers, :mod:`~sinks.recordings.g711`
decodes the payloads.
"""

from __future__ import annotations

from sinks.recordings.mp3 import FrameHeader, Mp3Encoder, iter_frames
from sinks.recordings.recording import LEGS, RecordingBuilder, iter_mp3
from sinks.recordings.timeline import LegTimeline

__all__ = [
    "LEGS",
    "FrameHeader",
    "LegTimeline",
    "Mp3Encoder",
    "RecordingBuilder",
    "iter_frames",
    "iter_mp3",
]
