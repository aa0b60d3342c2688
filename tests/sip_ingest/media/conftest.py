"""Helpers for the media tests: a controllable clock and a leg that collects its chunks."""

from __future__ import annotations

from typing import Any

import pytest

from sip_ingest.media.leg import LegState
from sip_ingest.media.rtp import RtpPacket

WALL_EPOCH = 1_750_000_000.0


class FakeClock:
    """Monotonic time the test advances by hand; wall time is a fixed offset from it."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def wall(self) -> float:
        return WALL_EPOCH + self.t


class Chunks(list[dict[str, Any]]):
    def __call__(self, record: dict[str, Any]) -> None:
        self.append(record)

    @property
    def payload(self) -> bytes:
        return b"".join(r["payload"] for r in self)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_leg(clock: FakeClock, **kwargs: Any) -> tuple[LegState, Chunks]:
    chunks = Chunks()
    leg = LegState(
        "call-1",
        "ws-1",
        kwargs.pop("leg", "CALLER"),
        on_chunk=chunks,
        monotonic=clock,
        wall_clock=clock.wall,
        **kwargs,
    )
    return leg, chunks


def audio(i: int, *, size: int = 160) -> bytes:
    """Distinct, recognisable payload for packet ``i``."""
    return bytes((i * 7 + k) & 0xFF for k in range(size))


def rtp(
    seq: int,
    ts: int,
    payload: bytes,
    *,
    pt: int = 0,
    ssrc: int = 0x1234,
    marker: bool = False,
) -> RtpPacket:
    return RtpPacket(pt, marker, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc, payload)


def feed(
    leg: LegState,
    clock: FakeClock,
    order: list[int],
    *,
    base_seq: int = 0,
    base_ts: int = 0,
    ssrc: int = 0x1234,
    step_s: float = 0.02,
) -> None:
    """Deliver packets ``order`` (indices into one stream), one every ``step_s``."""
    for i in order:
        leg.on_packet(rtp(base_seq + i, base_ts + 160 * i, audio(i), ssrc=ssrc), clock.t)
        clock.t += step_s
