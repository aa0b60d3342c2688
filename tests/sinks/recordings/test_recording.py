"""Recording rebuild and MP3 encoding: duration via frame headers, gaps, duplicates, alignment."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from sinks.recordings import RecordingBuilder, iter_frames, iter_mp3
from sinks.recordings.g711 import decode
from sinks.recordings.mp3 import LAME_ENCODER_DELAY
from sinks.recordings.timeline import LegTimeline, unwrap_rtp
from sip_ingest.media.wav import encode_g711, sine_pcm16

RATE = 8000
FRAME = 576
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def chunk(
    leg: str,
    seq: int,
    ts: int,
    payload: bytes,
    *,
    at: datetime | None = None,
    codec: str = "PCMU",
) -> dict[str, Any]:
    return {
        "leg": leg,
        "seq": seq,
        "first_rtp_seq": seq * 50 % 65536,
        "rtp_timestamp": ts % 2**32,
        "captured_at": at if at is not None else T0 + timedelta(seconds=(ts % 2**32) / RATE),
        "codec": codec,
        "sample_rate": RATE,
        "payload": payload,
        "missing_packets": 0,
    }


def tone_chunks(
    leg: str,
    seconds: float,
    *,
    freq: float = 440.0,
    chunk_s: float = 1.0,
    ts0: int = 0,
    start: datetime = T0,
    codec: str = "PCMU",
) -> list[dict[str, Any]]:
    pcm = sine_pcm16(freq, int(seconds * 1000))
    payload = encode_g711(pcm, codec)  # type: ignore[arg-type]
    step = int(chunk_s * RATE)
    return [
        chunk(
            leg,
            i,
            ts0 + off,
            payload[off : off + step],
            at=start + timedelta(seconds=off / RATE),
            codec=codec,
        )
        for i, off in enumerate(range(0, len(payload), step))
    ]


def interleave(*legs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted((c for leg in legs for c in leg), key=lambda c: c["captured_at"])


def encode(chunks: list[dict[str, Any]], **options: Any) -> tuple[bytes, RecordingBuilder]:
    builder = RecordingBuilder(**options)
    out = bytearray()
    for c in chunks:
        builder.add(c)
        out += builder.take_mp3()
    out += builder.finish()
    return bytes(out), builder


def mp3_samples(data: bytes) -> int:
    frames = list(iter_frames(data))
    for f in frames:
        assert (f.version, f.layer, f.bit_rate_kbps, f.sample_rate) == ("2.5", 3, 64, 8000)
        assert f.channel_mode in ("stereo", "joint_stereo")
    return len(frames) * FRAME - LAME_ENCODER_DELAY


def assert_duration(data: bytes, seconds: float) -> None:
    assert abs(mp3_samples(data) - seconds * RATE) <= FRAME


# ------------------------------------------------------------------------------------------
# G.711


def test_g711_tables_match_the_spec() -> None:
    mu = decode(bytes(range(256)), "PCMU")
    a = decode(bytes(range(256)), "PCMA")
    assert mu[0xFF] == 0 and mu[0x7F] == 0
    assert mu[0x00] == -32124 and mu[0x80] == 32124
    assert a[0xD5] == 8 and a[0x55] == -8
    assert a[0xAA] == 32256 and a[0x2A] == -32256
    assert mu.dtype == np.int16 and a.dtype == np.int16
    with pytest.raises(ValueError):
        decode(b"\x00", "G722")


# ------------------------------------------------------------------------------------------
# Timeline


def test_unwrap_rtp() -> None:
    assert unwrap_rtp(2**32 - 160, 2**32 - 160, 100) == 2**32 + 100
    assert unwrap_rtp(100, 2**32 + 100, 2**32 - 60) == 2**32 - 60
    assert unwrap_rtp(5, 5, 165) == 165


def test_leg_places_gaps_overlaps_and_duplicates() -> None:
    leg = LegTimeline("CALLER")
    ones = np.ones(100, dtype=np.int16)
    assert leg.add(0, 1000, T0, ones)
    assert leg.add(1, 1200, T0, ones * 2)  # 100 samples gap
    assert not leg.add(1, 1200, T0, ones * 9)  # duplicate
    assert leg.add(2, 1250, T0, ones * 3)  # overlaps 50
    out = leg.take(0, 400)
    assert (out[:100] == 1).all() and (out[100:200] == 0).all() and (out[200:300] == 2).all()
    assert (out[300:350] == 3).all() and (out[350:] == 0).all()
    assert leg.duplicates == 1 and leg.dropped_samples == 50


def test_leg_handles_u32_wrap() -> None:
    chunks = tone_chunks("CALLER", 4, ts0=2**32 - 12_000)
    data, builder = encode(chunks)
    assert builder.duration_s == 4
    assert_duration(data, 4)


def test_leg_resyncs_on_a_new_timestamp_base() -> None:
    leg = LegTimeline("AGENT")
    ones = np.ones(RATE, dtype=np.int16)
    leg.add(0, 0, T0, ones)
    leg.add(1, 123_456_789, T0 + timedelta(seconds=3), ones)  # new SSRC, random base
    leg.add(2, 123_456_789 + RATE, T0 + timedelta(seconds=4), ones)
    assert leg.resyncs == 1
    assert leg.end == 5 * RATE


# ------------------------------------------------------------------------------------------
# Recordings


def test_two_legs_tones_duration_and_format() -> None:
    caller = tone_chunks("CALLER", 10, freq=440)
    agent = tone_chunks("AGENT", 10, freq=660, ts0=777_777)
    data, builder = encode(interleave(caller, agent))
    assert builder.duration_s == 10
    assert_duration(data, 10)
    assert builder.duplicates == 0 and builder.dropped_samples == 0


def test_pcma_leg() -> None:
    data, builder = encode(tone_chunks("AGENT", 3, codec="PCMA"))
    assert builder.duration_s == 3
    assert_duration(data, 3)


def test_gap_adds_silence_to_the_total_duration() -> None:
    chunks = tone_chunks("CALLER", 10)
    del chunks[3:6]  # 3 s lost in the middle
    data, builder = encode(chunks)
    assert builder.duration_s == 10
    assert_duration(data, 10)
    trailing = tone_chunks("CALLER", 10)
    del trailing[9]  # a lost end cannot be known: the recording ends with the last chunk
    assert encode(trailing)[1].duration_s == 9


def test_later_leg_gets_leading_silence() -> None:
    caller = tone_chunks("CALLER", 10)
    agent = tone_chunks("AGENT", 5, ts0=5555, start=T0 + timedelta(seconds=7))
    data, builder = encode(interleave(caller, agent))
    assert builder.duration_s == 12
    assert_duration(data, 12)


def test_agent_first_is_aligned_too() -> None:
    agent = tone_chunks("AGENT", 6)
    caller = tone_chunks("CALLER", 6, start=T0 + timedelta(seconds=2))
    _, builder = encode(interleave(agent, caller))
    assert builder.duration_s == 8


def test_duplicates_do_not_change_the_output() -> None:
    chunks = interleave(tone_chunks("CALLER", 5), tone_chunks("AGENT", 5, freq=300))
    first, _ = encode(chunks)
    doubled = [c for c in chunks for _ in range(2)]
    second, builder = encode(doubled)
    assert first == second
    assert builder.duplicates == len(chunks)


def test_missing_leg_is_silence_and_empty_call_is_empty() -> None:
    data, builder = encode(tone_chunks("CALLER", 2))
    assert builder.duration_s == 2
    assert_duration(data, 2)
    empty, builder = encode([])
    assert empty == b"" and builder.duration_s == 0


def test_iter_mp3_streams_blocks() -> None:
    chunks = interleave(tone_chunks("CALLER", 30), tone_chunks("AGENT", 30))
    pieces = list(iter_mp3(chunks))
    assert len(pieces) > 10
    assert_duration(b"".join(pieces), 30)
    assert b"".join(pieces) == encode(chunks)[0]


def test_leg_beyond_max_skew_loses_late_audio() -> None:
    caller = tone_chunks("CALLER", 20)
    agent = tone_chunks("AGENT", 20, start=T0)
    # The agent's chunks all arrive after the caller's: the first 15 s of them are too late.
    data, builder = encode([*caller, *agent], max_skew_s=5)
    assert builder.duration_s == 20
    assert builder.dropped_samples == 15 * RATE
    assert_duration(data, 20)


def test_bad_chunks_are_refused() -> None:
    builder = RecordingBuilder()
    good = tone_chunks("CALLER", 1)[0]
    for bad in (
        {**good, "leg": "THIRD"},
        {**good, "sample_rate": 16000},
        {**good, "captured_at": datetime(2026, 1, 1)},
        {**good, "codec": "OPUS"},
    ):
        with pytest.raises(ValueError):
            builder.add(bad)


def test_memory_is_bounded_for_a_one_hour_call() -> None:
    seconds = 3600
    tone = encode_g711(sine_pcm16(440, 1000), "PCMU")

    def chunks() -> Iterator[dict[str, Any]]:
        for i in range(seconds):
            for leg, ts0 in (("CALLER", 0), ("AGENT", 99_999)):
                yield chunk(leg, i, ts0 + i * RATE, tone, at=T0 + timedelta(seconds=i))

    tracemalloc.start()
    try:
        frames = 0
        for piece in iter_mp3(chunks(), quality=7):  # same framing, faster
            frames += len(piece) // FRAME  # CBR, no padding at 8 kHz / 64 kbit/s
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert abs(frames * FRAME - LAME_ENCODER_DELAY - seconds * RATE) <= FRAME
    assert peak < 3 * 1024 * 1024, peak


class _Capture:
    def __init__(self) -> None:
        self.left: list[np.ndarray] = []
        self.right: list[np.ndarray] = []

    def encode(self, left: np.ndarray, right: np.ndarray) -> bytes:
        self.left.append(left)
        self.right.append(right)
        return b""

    def flush(self) -> bytes:
        return b""


def test_channels_and_alignment_sample_exact() -> None:
    builder = RecordingBuilder(block_s=0.5)
    capture = _Capture()
    builder._encoder = capture  # type: ignore[assignment]
    caller = [chunk("CALLER", 0, 0, b"\x00" * RATE, at=T0)]  # mu-law 0x00 = -32124
    agent = [
        chunk("AGENT", 0, 50, b"\x80" * 800, at=T0 + timedelta(milliseconds=250)),
        chunk("AGENT", 1, 50 + 1600, b"\x80" * 800, at=T0 + timedelta(milliseconds=450)),
    ]
    for c in (*caller, *agent):
        builder.add(c)
        builder.take_mp3()
    builder.finish()
    left, right = np.concatenate(capture.left), np.concatenate(capture.right)
    assert len(left) == len(right) == RATE
    assert (left == -32124).all()
    assert (right[:2000] == 0).all()  # agent starts 250 ms later
    assert (right[2000:2800] == 32124).all()
    assert (right[2800:3600] == 0).all()  # 100 ms RTP gap
    assert (right[3600:4400] == 32124).all() and (right[4400:] == 0).all()
