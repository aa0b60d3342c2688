"""RTP senders: one stream for the test client and the tests, many for the benchmark.

:class:`RtpSender` streams G.711 to one address the way a phone does -- paced at real time on
the event loop (absolute deadlines, so scheduling delays do not accumulate into drift), with
optional SRTP and RFC 4733 DTMF presses interleaved with the audio. Unpaced mode bursts the whole
stream for tests that check exactness rather than timing.

:func:`run_load` is a synchronous many-leg generator for ``bench/``: one socket, legs spread over
sub-slots of each 20 ms tick so the receiver sees a realistic even arrival pattern rather than
thousands of packets in one instant. It runs in its own process so the sender's CPU does not
share the receiver's GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sip_ingest.media.leg import Codec
from sip_ingest.media.rtp import CLOCK_RATE, HEADER, build_rtp
from sip_ingest.media.srtp import SrtpSender

__all__ = [
    "DTMF_EVENT_CODES",
    "DtmfPress",
    "LoadReport",
    "RtpSender",
    "SendReport",
    "run_load",
]

Address = tuple[str, int]

#: RFC 4733 section 3.2 event codes for the DTMF keys.
DTMF_EVENT_CODES: Final[dict[str, int]] = {
    **{str(d): d for d in range(10)},
    "*": 10,
    "#": 11,
    "A": 12,
    "B": 13,
    "C": 14,
    "D": 15,
}
_PAYLOAD_TYPE_OF: Final[dict[str, int]] = {"PCMU": 0, "PCMA": 8}
#: RFC 4733 2.5.1.4: the final packet of an event is sent three times in case of loss.
END_REPEATS: Final = 3
_UNPACED_YIELD_EVERY: Final = 32


@dataclass(frozen=True, slots=True)
class DtmfPress:
    """A key press to send ``at_ms`` into the audio, as RFC 4733 telephone-events."""

    at_ms: int
    digit: str
    duration_ms: int = 100
    volume: int = 10  # -dBm0, RFC 4733 2.3.4

    def __post_init__(self) -> None:
        if self.digit.upper() not in DTMF_EVENT_CODES:
            raise ValueError(f"not a DTMF key: {self.digit!r}")
        if self.at_ms < 0 or self.duration_ms <= 0:
            raise ValueError("DTMF press needs at_ms >= 0 and duration_ms > 0")


@dataclass(frozen=True, slots=True)
class SendReport:
    ssrc: int
    first_seq: int
    last_seq: int
    audio_packets: int
    dtmf_packets: int
    payload_bytes: int
    """Audio payload bytes sent (telephone-event payloads excluded)."""
    elapsed_s: float
    max_late_ms: float
    """Worst lateness of a paced send against its deadline (0 when unpaced)."""


class RtpSender:
    """One RTP stream to ``remote``: sequence, timestamp and SSRC carry over between sends."""

    def __init__(
        self,
        remote: Address,
        *,
        codec: Codec = "PCMU",
        dtmf_payload_type: int = 101,
        ptime_ms: int = 20,
        ssrc: int | None = None,
        start_seq: int | None = None,
        start_ts: int | None = None,
        srtp: SrtpSender | None = None,
        local: Address = ("127.0.0.1", 0),
        sock: socket.socket | None = None,
    ) -> None:
        self.remote = remote
        self.codec: Codec = codec
        self.payload_type = _PAYLOAD_TYPE_OF[codec]
        self.dtmf_payload_type = dtmf_payload_type
        self.ptime_ms = ptime_ms
        self.samples_per_packet = ptime_ms * CLOCK_RATE // 1000
        # Random initial values, as RFC 3550 asks, so receivers' wrap handling gets exercised.
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc
        self._seq = secrets.randbits(16) if start_seq is None else start_seq
        self._ts = secrets.randbits(32) if start_ts is None else start_ts
        self._srtp = srtp
        if sock is None:
            family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.bind(local)
        sock.setblocking(False)
        self._sock = sock

    @property
    def local_address(self) -> Address:
        host, port = self._sock.getsockname()[:2]
        return host, port

    @property
    def next_seq(self) -> int:
        return self._seq & 0xFFFF

    @property
    def next_timestamp(self) -> int:
        return self._ts & 0xFFFFFFFF

    def set_srtp(self, srtp: SrtpSender | None) -> None:
        self._srtp = srtp

    def close(self) -> None:
        self._sock.close()

    def packets(self, g711: bytes, dtmf: Sequence[DtmfPress] = ()) -> list[tuple[int, bytes, bool]]:
        """The plain RTP packets of one send as ``(tick, packet, is_audio)``, in send order.

        Advances the stream's sequence number and timestamp, as sending them would.
        """
        step = self.samples_per_packet
        n_audio = math.ceil(len(g711) / step)
        events: dict[int, list[tuple[bytes, int, bool]]] = {}  # tick -> (payload, ts, marker)
        last_tick = n_audio - 1
        for press in dtmf:
            start = press.at_ms // self.ptime_ms
            ts = self._ts + start * step
            code = DTMF_EVENT_CODES[press.digit.upper()]
            total = min(press.duration_ms * CLOCK_RATE // 1000, 0xFFFF)
            n = max(1, math.ceil(total / step))
            for k in range(n):
                payload = struct.pack("!BBH", code, press.volume & 0x3F, min((k + 1) * step, total))
                events.setdefault(start + k, []).append((payload, ts, k == 0))
            end = struct.pack("!BBH", code, 0x80 | (press.volume & 0x3F), total)
            events.setdefault(start + n, []).extend([(end, ts, False)] * END_REPEATS)
            last_tick = max(last_tick, start + n)
        out: list[tuple[int, bytes, bool]] = []
        seq = self._seq
        for tick in range(last_tick + 1):
            if tick < n_audio:
                payload = g711[tick * step : (tick + 1) * step]
                out.append(
                    (
                        tick,
                        build_rtp(
                            self.payload_type,
                            seq,
                            self._ts + tick * step,
                            self.ssrc,
                            payload,
                            marker=tick == 0,
                        ),
                        True,
                    )
                )
                seq += 1
            for payload, ts, marker in events.get(tick, ()):
                out.append(
                    (
                        tick,
                        build_rtp(
                            self.dtmf_payload_type, seq, ts, self.ssrc, payload, marker=marker
                        ),
                        False,
                    )
                )
                seq += 1
        self._seq = seq & 0xFFFF
        self._ts = (self._ts + (last_tick + 1) * step) & 0xFFFFFFFF
        return out

    async def send(
        self, g711: bytes, *, paced: bool = True, dtmf: Sequence[DtmfPress] = ()
    ) -> SendReport:
        """Send ``g711`` (and any DTMF presses) as RTP; returns when the last packet is out."""
        loop = asyncio.get_running_loop()
        first_seq = self.next_seq
        plan = self.packets(g711, dtmf)
        started = loop.time()
        period = self.ptime_ms / 1000.0
        max_late = 0.0
        audio = 0
        for i, (tick, packet, is_audio) in enumerate(plan):
            if paced:
                delay = started + tick * period - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    max_late = max(max_late, -delay)
            elif i % _UNPACED_YIELD_EVERY == _UNPACED_YIELD_EVERY - 1:
                await asyncio.sleep(0)  # let a receiver on the same loop drain its socket
            data = self._srtp.protect(packet) if self._srtp is not None else packet
            try:
                self._sock.sendto(data, self.remote)
            except BlockingIOError:
                await loop.sock_sendto(self._sock, data, self.remote)
            audio += is_audio
        return SendReport(
            ssrc=self.ssrc,
            first_seq=first_seq,
            last_seq=(self._seq - 1) & 0xFFFF,
            audio_packets=audio,
            dtmf_packets=len(plan) - audio,
            payload_bytes=len(g711),
            elapsed_s=loop.time() - started,
            max_late_ms=max_late * 1000.0,
        )


# ------------------------------------------------------------------------------------------
# load generation


@dataclass(frozen=True, slots=True)
class LoadReport:
    legs: int
    packets_sent: int
    elapsed_s: float
    max_lag_ms: float
    """Worst lateness of a sub-slot against its schedule: a large value means the sender,
    not the receiver, limited the offered load."""
    finished_at: float
    """``time.monotonic()`` when the last packet was sent; later than ``start_at + duration_s``
    means the load was not delivered on schedule."""

    @property
    def packets_per_second(self) -> float:
        return self.packets_sent / self.elapsed_s if self.elapsed_s else 0.0


def run_load(
    destinations: Sequence[Address],
    duration_s: float,
    *,
    start_at: float | None = None,
    ptime_ms: int = 20,
    payload: bytes = b"\xff" * 160,
    payload_type: int = 0,
    slots: int = 20,
    srtp: SrtpSender | None = None,
    sndbuf: int = 4 << 20,
) -> LoadReport:
    """Send one paced stream per destination for ``duration_s`` (blocking; run in a process).

    ``start_at`` is a ``time.monotonic()`` deadline, which is system-wide on Linux, so a receiver
    in another process can know exactly when the load starts and stops.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    n = len(destinations)
    step = ptime_ms * CLOCK_RATE // 1000
    seq0 = [secrets.randbits(16) for _ in range(n)]
    ts0 = [secrets.randbits(32) for _ in range(n)]
    ssrcs = [secrets.randbits(32) for _ in range(n)]
    pack = HEADER.pack
    sendto = sock.sendto
    protect = srtp.protect if srtp is not None else None
    period = ptime_ms / 1000.0
    slot_len = period / slots
    groups = [range(s, n, slots) for s in range(slots)]
    start = time.monotonic() if start_at is None else start_at
    end = start + duration_s
    sent = 0
    max_lag = 0.0
    tick = 0
    try:
        while True:
            tick_start = start + tick * period
            if tick_start >= end:
                break
            ts_off = tick * step
            for s, group in enumerate(groups):
                due = tick_start + s * slot_len
                lag = time.monotonic() - due
                if lag < 0:
                    time.sleep(-lag)
                elif lag > max_lag:
                    max_lag = lag
                for i in group:
                    packet = (
                        pack(
                            0x80,
                            payload_type,
                            (seq0[i] + tick) & 0xFFFF,
                            (ts0[i] + ts_off) & 0xFFFFFFFF,
                            ssrcs[i],
                        )
                        + payload
                    )
                    if protect is not None:
                        packet = protect(packet)
                    sendto(packet, destinations[i])
                sent += len(group)
            tick += 1
    finally:
        sock.close()
    finished = time.monotonic()
    return LoadReport(
        legs=n,
        packets_sent=sent,
        elapsed_s=finished - start,
        max_lag_ms=max_lag * 1000.0,
        finished_at=finished,
    )
