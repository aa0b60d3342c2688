"""Per-leg sequence, reorder, loss, jitter, DTMF and chunking behaviour (no sockets)."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import get_codec
from sip_ingest.media.leg import LegState
from sip_ingest.media.rtp import RtpPacket

from .conftest import WALL_EPOCH, Chunks, FakeClock, audio, feed, make_leg, rtp


def expected_audio(indices: list[int] | range) -> bytes:
    return b"".join(audio(i) for i in indices)


def test_one_second_of_20ms_packets_is_one_exact_chunk(clock: FakeClock) -> None:
    leg, chunks = make_leg(clock)
    t0 = clock.t
    feed(leg, clock, list(range(50)), base_seq=1000, base_ts=5000)
    assert len(chunks) == 1
    rec = chunks[0]
    assert rec["payload"] == expected_audio(range(50))
    assert len(rec["payload"]) == 8000
    assert rec["seq"] == 0
    assert rec["first_rtp_seq"] == 1000
    assert rec["rtp_timestamp"] == 5000
    assert rec["missing_packets"] == 0
    assert rec["codec"] == "PCMU"
    assert rec["sample_rate"] == 8000
    assert (rec["call_id"], rec["workspace_id"], rec["leg"]) == ("call-1", "ws-1", "CALLER")
    assert rec["captured_at"] == datetime.fromtimestamp(WALL_EPOCH + t0, tz=UTC)
    assert rec["captured_at"].tzinfo is not None
    codec = get_codec()
    # the bridge adds the call context (call_started_at, agent_id, suppressed); defaults here
    assert codec.decode("AudioChunk", codec.encode("AudioChunk", rec)).items() >= rec.items()
    leg.flush()
    assert len(chunks) == 1  # nothing partial left over


def test_chunk_counter_and_flush_of_the_partial_last_chunk(clock: FakeClock) -> None:
    leg, chunks = make_leg(clock, leg="AGENT")
    feed(leg, clock, list(range(120)))
    assert [c["seq"] for c in chunks] == [0, 1]
    leg.flush()
    assert [c["seq"] for c in chunks] == [0, 1, 2]
    assert len(chunks[2]["payload"]) == 20 * 160
    assert chunks[2]["first_rtp_seq"] == 100
    assert chunks[2]["rtp_timestamp"] == 100 * 160
    assert chunks.payload == expected_audio(range(120))
    assert all(c["leg"] == "AGENT" for c in chunks)


def test_chunk_ms_setting(clock: FakeClock) -> None:
    leg, chunks = make_leg(clock, chunk_ms=200)
    feed(leg, clock, list(range(20)))
    assert [len(c["payload"]) for c in chunks] == [1600, 1600]


def test_sequence_wraps_at_65535(clock: FakeClock) -> None:
    leg, chunks = make_leg(clock)
    feed(leg, clock, list(range(60)), base_seq=65530, base_ts=2**32 - 800)
    leg.flush()
    stats = leg.stats()
    assert stats.packets_expected == 60
    assert stats.packets_lost == 0
    assert stats.duplicates == stats.late == stats.resyncs == 0
    assert chunks.payload == expected_audio(range(60))
    assert chunks[0]["first_rtp_seq"] == 65530
    assert chunks[0]["rtp_timestamp"] == 2**32 - 800
    assert chunks[1]["first_rtp_seq"] == (65530 + 50) & 0xFFFF


def test_reorder_across_the_wrap(clock: FakeClock) -> None:
    leg, chunks = make_leg(clock)
    # 65534, 65535, 1, 0, 2 -> 0 arrives after 1 (across the wrap) and is put back in order
    feed(leg, clock, [0, 1, 3, 2, 4], base_seq=65534)
    leg.flush()
    assert chunks.payload == expected_audio(range(5))
    assert leg.stats().reordered == 1
    assert leg.stats().packets_lost == 0


def test_ssrc_change_restarts_sequence_but_keeps_the_leg(clock: FakeClock) -> None:
    leg, chunks = make_leg(clock)
    feed(leg, clock, list(range(10)), base_seq=100, base_ts=0, ssrc=1)
    feed(leg, clock, list(range(10, 20)), base_seq=40000, base_ts=7_000_000, ssrc=2)
    leg.flush()
    stats = leg.stats()
    assert stats.ssrc_changes == 1
    assert stats.packets_expected == 20
    assert stats.packets_lost == 0
    # the chunk is cut at the change: its timestamps are on another media clock
    assert [c["seq"] for c in chunks] == [0, 1]
    assert chunks[1]["first_rtp_seq"] == (40000 + 10) & 0xFFFF
    assert chunks[1]["rtp_timestamp"] == 7_000_000 + 1600
    assert chunks.payload == expected_audio(range(20))


def test_duplicates_are_dropped(clock: FakeClock) -> None:
    leg, chunks = make_leg(clock)
    # a duplicate of a released packet, and a duplicate of a packet held for reordering
    feed(leg, clock, [0, 1, 1, 3, 3, 2, 4, 0])
    leg.flush()
    assert chunks.payload == expected_audio(range(5))
    stats = leg.stats()
    assert stats.duplicates == 3
    assert stats.packets_received == 8
    assert stats.packets_lost == 0


def test_reorder_within_the_window(clock: FakeClock) -> None:
    leg, chunks = make_leg(clock)
    feed(leg, clock, [0, 1, 3, 2, 4, 6, 7, 5, 8])  # 5 waits 40 ms: inside the 60 ms window
    leg.flush()
    assert chunks.payload == expected_audio(range(9))
    stats = leg.stats()
    assert stats.reordered == 2
    assert stats.late == 0
    assert chunks[0]["missing_packets"] == 0


def test_late_packet_is_counted_and_kept_out_of_the_audio(clock: FakeClock) -> None:
    leg, chunks = make_leg(clock)
    feed(leg, clock, [0, 1, 3, 4, 5, 6, 7, 2, 8])  # 2 arrives 100 ms after 3
    leg.flush()
    stats = leg.stats()
    assert stats.late == 1
    assert stats.gaps_skipped == 1
    assert stats.packets_lost == 0  # it did arrive (RFC 3550 counts it received)
    assert chunks.payload == expected_audio([0, 1, 3, 4, 5, 6, 7, 8])
    assert chunks[0]["missing_packets"] == 1
    # a copy of the late packet is a duplicate, not a second late packet
    leg.on_packet(rtp(2, 320, audio(2)), clock.t)
    assert leg.stats().late == 1
    assert leg.stats().duplicates == 1


def test_reordering_at_stream_start(clock: FakeClock) -> None:
    leg, chunks = make_leg(clock)
    feed(leg, clock, [1, 0, 2, 3], base_seq=65535)  # the first packet to arrive is the 2nd sent
    leg.flush()
    assert chunks.payload == expected_audio(range(4))
    assert chunks[0]["first_rtp_seq"] == 65535
    stats = leg.stats()
    assert (stats.packets_expected, stats.packets_lost, stats.late) == (4, 0, 0)


def test_reorder_buffer_gives_up_by_count(clock: FakeClock) -> None:
    leg, chunks = make_leg(clock, reorder_packets=3)
    feed(leg, clock, [0, 2, 3, 4, 5], step_s=0.0)  # no time passes: the count decides
    assert chunks == []  # still open
    leg.flush()
    assert chunks[0]["missing_packets"] == 1
    assert chunks.payload == expected_audio([0, 2, 3, 4, 5])


def test_loss_counting(clock: FakeClock) -> None:
    leg, chunks = make_leg(clock)
    lost = {10, 50, 51, 99}
    feed(leg, clock, [i for i in range(101) if i not in lost])
    leg.flush()
    stats = leg.stats()
    assert stats.packets_expected == 101
    assert stats.packets_lost == 4
    assert stats.loss_ratio == pytest.approx(4 / 101)
    assert chunks.payload == expected_audio([i for i in range(101) if i not in lost])
    # 10 is inside chunk 0; 50+51 fall between chunk 0 (ends at 49) and chunk 1, whose
    # rtp_timestamp says where it starts; 99 is inside chunk 1 (flushed partial: 52..100)
    assert [c["missing_packets"] for c in chunks] == [1, 1]
    assert chunks[1]["rtp_timestamp"] == 52 * 160
    assert stats.missing_in_chunks == 2
    assert stats.gaps_skipped == 4


def test_split_on_loss_gives_gap_free_chunks(clock: FakeClock) -> None:
    leg, chunks = make_leg(clock, split_on_loss=True)
    feed(leg, clock, [i for i in range(30) if i not in (5, 6, 20)])
    leg.flush()
    assert [(c["rtp_timestamp"] // 160, len(c["payload"]) // 160) for c in chunks] == [
        (0, 5),
        (7, 13),
        (21, 9),
    ]
    assert all(c["missing_packets"] == 0 for c in chunks)


def test_timestamp_discontinuity_cuts_the_chunk(clock: FakeClock) -> None:
    leg, chunks = make_leg(clock)
    for i in range(10):
        leg.on_packet(rtp(i, 160 * i, audio(i)), clock.t)
    # silence suppression: 2 s without packets, then the timestamp jumps, the seq does not
    for i in range(10, 15):
        leg.on_packet(rtp(i, 16000 + 160 * i, audio(i), marker=i == 10), clock.t)
    leg.flush()
    assert [c["rtp_timestamp"] for c in chunks] == [0, 16000 + 1600]
    assert chunks.payload == expected_audio(range(15))
    assert leg.stats().packets_lost == 0


def test_codec_change_cuts_the_chunk(clock: FakeClock) -> None:
    leg, chunks = make_leg(clock)
    for i in range(6):
        leg.on_packet(rtp(i, 160 * i, audio(i), pt=0 if i < 3 else 8), clock.t)
    leg.flush()
    assert [(c["codec"], c["first_rtp_seq"]) for c in chunks] == [("PCMU", 0), ("PCMA", 3)]


def test_unexpected_payload_type_is_a_counted_drop(clock: FakeClock) -> None:
    leg, chunks = make_leg(clock)
    leg.on_packet(rtp(0, 0, audio(0)), clock.t)
    leg.on_packet(rtp(1, 160, b"\x40", pt=13), clock.t)  # comfort noise
    leg.on_packet(rtp(2, 320, b""), clock.t)
    leg.on_packet(rtp(3, 480, audio(3)), clock.t)
    leg.flush()
    assert leg.stats().drops == {"unexpected_payload_type": 1, "empty_payload": 1}
    assert chunks.payload == audio(0) + audio(3)


def test_sequence_restart_is_confirmed_by_the_next_packet(clock: FakeClock) -> None:
    leg, chunks = make_leg(clock)
    feed(leg, clock, list(range(10)))
    # the sender restarts its numbering (no SSRC change): nothing of it is lost
    for k in range(5):
        leg.on_packet(rtp(30000 + k, 100_000 + 160 * k, audio(100 + k)), clock.t)
    leg.flush()
    stats = leg.stats()
    assert stats.resyncs == 1
    assert stats.drops == {}
    assert chunks.payload == expected_audio(range(10)) + expected_audio(range(100, 105))


def test_a_stray_packet_far_off_the_sequence_is_dropped(clock: FakeClock) -> None:
    leg, chunks = make_leg(clock)
    feed(leg, clock, [0, 1, 2])
    leg.on_packet(rtp(40000, 999, b"stray"), clock.t)
    feed(leg, clock, [3, 4])
    leg.flush()
    assert leg.stats().drops == {"rtp_seq_jump": 1}
    assert leg.stats().resyncs == 0
    assert chunks.payload == expected_audio(range(5))


def test_jitter_matches_a_hand_computed_case(clock: FakeClock) -> None:
    leg, _ = make_leg(clock)
    # arrivals at 0, 20, 45, 60 ms; timestamps 0, 160, 320, 480 (20 ms apart at 8 kHz)
    # arrival in ts units: 0, 160, 360, 480 -> transit 0, 0, 40, 0 -> D = 0, 40, 40
    # J = 0 -> 0 + (0-0)/16 = 0 -> 0 + (40-0)/16 = 2.5 -> 2.5 + (40-2.5)/16 = 4.84375 units
    for i, at in enumerate([0.0, 0.020, 0.045, 0.060]):
        leg.on_packet(rtp(i, 160 * i, audio(i)), 500.0 + at)
    assert leg.jitter_ms == pytest.approx(4.84375 / 8)
    assert leg.stats().jitter_ms == pytest.approx(0.60546875)


def test_last_packet_at_follows_arrivals(clock: FakeClock) -> None:
    leg, _ = make_leg(clock)
    assert leg.last_packet_at is None
    feed(leg, clock, [0, 1, 2])
    assert leg.last_packet_at == pytest.approx(clock.t - 0.02)
    assert leg.stats().last_packet_at == leg.last_packet_at


# ------------------------------------------------------------------------------------------
# DTMF


def dtmf_payload(code: int, *, end: bool, duration: int) -> bytes:
    return struct.pack("!BBH", code, (0x80 if end else 0) | 10, duration)


def press(
    leg: LegState,
    clock: FakeClock,
    code: int,
    *,
    seq: int,
    ts: int,
    with_audio: bool = True,
) -> int:
    """One key press as a phone sends it: start (marker), continuations, 3 end packets.

    Audio keeps flowing in between (as many gateways do). Returns the next seq.
    """
    packets: list[RtpPacket] = []
    for k in range(4):
        if with_audio:
            packets.append(rtp(seq, ts + 160 * k, audio(seq)))
            seq += 1
        packets.append(
            rtp(
                seq,
                ts,
                dtmf_payload(code, end=False, duration=160 * (k + 1)),
                pt=101,
                marker=k == 0,
            )
        )
        seq += 1
    for _ in range(3):
        packets.append(rtp(seq, ts, dtmf_payload(code, end=True, duration=800), pt=101))
        seq += 1
    for p in packets:
        leg.on_packet(p, clock.t)
        clock.t += 0.01
    return seq


def test_one_press_counts_once_despite_three_end_packets(clock: FakeClock) -> None:
    leg, chunks = make_leg(clock, dtmf_payload_type=101)
    press(leg, clock, 5, seq=0, ts=0)
    leg.flush()
    stats = leg.stats()
    assert stats.dtmf_events == 1
    assert [e.rtp_timestamp for e in stats.dtmf_event_times] == [0]
    assert stats.dtmf_event_times[0].at.tzinfo is not None
    # the telephone-event payloads are not audio; the interleaved audio stays one run
    assert chunks.payload == b"".join(audio(s) for s in (0, 2, 4, 6))
    assert len(chunks) == 1
    assert chunks[0]["missing_packets"] == 0
    assert stats.packets_lost == 0
    assert stats.drops == {}


def test_presses_are_counted_even_when_start_packets_are_lost(clock: FakeClock) -> None:
    leg, _ = make_leg(clock, dtmf_payload_type=101)
    seq = press(leg, clock, 1, seq=0, ts=0, with_audio=False)
    seq = press(leg, clock, 1, seq=seq, ts=8000, with_audio=False)  # same key twice
    # third press: only its end packets arrive
    for k in range(3):
        leg.on_packet(rtp(seq + k, 16000, dtmf_payload(2, end=True, duration=800), pt=101), clock.t)
    assert leg.stats().dtmf_events == 3


def test_a_long_press_split_into_segments_counts_once(clock: FakeClock) -> None:
    leg, _ = make_leg(clock, dtmf_payload_type=101)
    # RFC 4733 2.5.1.3: a press longer than the duration field continues with a new timestamp
    # and no marker while the event has not ended
    leg.on_packet(rtp(0, 0, dtmf_payload(4, end=False, duration=65535), pt=101, marker=True), 1.0)
    leg.on_packet(rtp(1, 65535, dtmf_payload(4, end=False, duration=800), pt=101), 1.1)
    leg.on_packet(rtp(2, 65535, dtmf_payload(4, end=True, duration=1600), pt=101), 1.2)
    assert leg.stats().dtmf_events == 1


def _run_keyed(clock: FakeClock, code: int) -> tuple[Chunks, Any, LegState]:
    leg, chunks = make_leg(clock, dtmf_payload_type=101)
    seq = press(leg, clock, code, seq=0, ts=0)
    for k in range(60):
        leg.on_packet(rtp(seq + k, 800 + 160 * k, audio(seq + k)), clock.t)
        clock.t += 0.02
    leg.flush()
    return chunks, leg.stats(), leg


def _contains(obj: Any, needle: bytes, seen: set[int] | None = None) -> bool:
    """Whether any bytes reachable from ``obj`` contain ``needle``."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return False
    seen.add(id(obj))
    if isinstance(obj, bytes | bytearray | memoryview):
        return needle in bytes(obj)
    if isinstance(obj, dict):
        return any(_contains(k, needle, seen) or _contains(v, needle, seen) for k, v in obj.items())
    if isinstance(obj, list | tuple | set | frozenset):
        return any(_contains(v, needle, seen) for v in obj)
    if hasattr(obj, "__slots__"):
        return any(_contains(getattr(obj, s, None), needle, seen) for s in obj.__slots__)
    if hasattr(obj, "__dict__"):
        return _contains(vars(obj), needle, seen)
    return False


def test_no_digit_is_stored_or_published() -> None:
    """The leg's outputs for key 1 and key 9 are indistinguishable, and no state holds the key."""
    chunks_1, stats_1, leg_1 = _run_keyed(FakeClock(), 1)
    chunks_9, stats_9, leg_9 = _run_keyed(FakeClock(), 9)
    assert stats_1.dtmf_events == stats_9.dtmf_events == 1
    assert list(chunks_1) == list(chunks_9)
    assert stats_1 == stats_9
    for leg, code in ((leg_1, 1), (leg_9, 9)):
        event_bytes = dtmf_payload(code, end=True, duration=800)
        assert not _contains(leg, event_bytes)
        assert not _contains(leg, dtmf_payload(code, end=False, duration=160))
    for rec in chunks_9:
        assert b"\x09\x8a" not in rec["payload"]  # code 9 + E bit/volume never reached audio


def test_on_dtmf_callback_gets_time_not_key(clock: FakeClock) -> None:
    events: list[Any] = []
    leg, _ = make_leg(clock, dtmf_payload_type=101, on_dtmf=events.append)
    press(leg, clock, 7, seq=0, ts=320)
    assert len(events) == 1
    assert set(type(events[0]).__slots__) == {"at", "rtp_timestamp"}
    assert events[0].rtp_timestamp == 320


# ------------------------------------------------------------------------------------------
# properties


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=150), st.integers(0, 65535))
def test_adjacent_swaps_are_always_repaired(swaps: list[bool], base_seq: int) -> None:
    order = list(range(len(swaps) + 1))
    i = 0
    while i < len(swaps):
        if swaps[i]:
            order[i], order[i + 1] = order[i + 1], order[i]
            i += 2
        else:
            i += 1
    clock = FakeClock()
    leg, chunks = make_leg(clock)
    feed(leg, clock, order, base_seq=base_seq)
    leg.flush()
    assert chunks.payload == expected_audio(range(len(order)))
    assert [c["seq"] for c in chunks] == list(range(len(chunks)))
    stats = leg.stats()
    assert stats.packets_lost == 0 and stats.late == 0 and stats.duplicates == 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 79), st.floats(0, 0.2)),
        min_size=1,
        max_size=200,
    )
)
def test_any_arrival_pattern_keeps_bytes_in_order_and_unique(
    arrivals: list[tuple[int, float]],
) -> None:
    """Whatever arrives (loss, duplicates, reordering), published audio is a subsequence of the
    stream in order, each packet at most once, and the counters add up."""
    clock = FakeClock()
    leg, chunks = make_leg(clock)
    for i, dt in arrivals:
        clock.t += dt
        leg.on_packet(rtp(i, 160 * i, audio(i)), clock.t)
    leg.flush()
    published = [chunks.payload[k : k + 160] for k in range(0, len(chunks.payload), 160)]
    indices = [(p[0] * 183) % 256 for p in published]  # audio(i)[0] == 7*i mod 256; 183 = 7^-1
    assert indices == sorted(set(indices))
    stats = leg.stats()
    assert stats.duplicates + stats.late + len(published) == len(arrivals) - stats.drops.get(
        "rtp_seq_jump", 0
    )
