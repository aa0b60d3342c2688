"""Concurrent RTP legs one receiver process sustains, beside a raw UDP baseline in the same run.

    python bench/rtp_receive.py [--steps 100,200,400,...] [--step-s 10] [--loops asyncio,uvloop]
                                [--modes raw,media] [--srtp] [--refine 2] [--json out.json]

Each leg is one UDP socket on 127.0.0.1 receiving 50 packets/s of 160-byte G.711 (20 ms), as an
ingest node sees a call leg. The load comes from a separate process so the sender does not share
the receiver's GIL. It spreads the legs over ``--slots`` sub-slots of each 20 ms tick and sends
each sub-slot with one ``sendmmsg(2)`` (``--sendto``: ``sip_ingest.media.sender.run_load``'s
one ``sendto`` per packet, which on 2 cores becomes the limit first).

Modes, on the same kind of sockets (non-blocking, 1 MiB SO_RCVBUF, one ``add_reader`` each):
- raw:      drain with ``recvfrom_into`` into a 2 KiB buffer until EAGAIN and count; no parsing.
            The ceiling of any Python receiver on this loop (the baseline);
- media:    the real path: ``RtpReceiver`` (latching, optional SRTP) -> ``LegState`` (sequence,
            reorder, jitter, DTMF, chunking) -> Avro-encode every ``AudioChunk``;
- protocol: asyncio's stock ``DatagramProtocol`` counting datagrams, for reference;
- rawonce / rawpeek: raw with one read per wake-up / with a FIONREAD check instead of the EAGAIN
            exception, to compare drain strategies.

A step passes when at most 0.1% of the packets sent were processed by the time the sender
finished + 50 ms. Counting at that deadline, not after draining, matters: each socket buffers
~26 s of its leg, so a receiver that falls behind would otherwise look loss-free for the whole
step. "never" is what had still not arrived one second later (kernel drops). A step whose sender
delivered under 99% of the target rate is reported as sender-bound: it measured the sender, and
the search stops there ("at least N"). On a VM the sender's cost per packet depends on the
receiver: every packet that finds the receiver asleep in epoll pays a cross-CPU wake-up, so an
idle (fast) receiver slows the sender down -- the raw baseline hits that first. Legs step up until
a step fails, then ``--refine`` bisects between the last pass and the first failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import gc
import json
import multiprocessing as mp
import os
import socket
import struct
import sys
import termios
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schemas.codec import get_codec
from sip_ingest.media.leg import LegState
from sip_ingest.media.ports import RtpPortAllocator
from sip_ingest.media.receiver import BUFFER_SIZE, RtpReceiver
from sip_ingest.media.sender import LoadReport, run_load
from sip_ingest.media.srtp import SrtpReceiver, SrtpSender, new_master_key

HOST = "127.0.0.1"
LOSS_LIMIT = 0.001
GRACE_S = 0.05
LEAD_S = 0.5
#: A step whose sender delivered less than this share of the target rate measured the sender.
MIN_OFFERED = 0.99
DEFAULT_STEPS = (100, 200, 400, 800, 1200, 1600, 2000, 2400, 3200, 4000, 4800)


# ------------------------------------------------------------------------------------------
# sender process


def sender_worker(conn: Connection) -> None:
    """Serve load requests until told to stop; one process for the whole run."""
    while True:
        msg = conn.recv()
        if msg is None:
            return
        dests, duration, start_at, key, batched, slots = msg
        srtp = SrtpSender(key) if key is not None else None
        if batched and _Mmsg.available():
            conn.send(_Mmsg(dests, srtp, slots).run(duration, start_at))
        else:
            conn.send(run_load(dests, duration, start_at=start_at, srtp=srtp, slots=slots))


class _Mmsg:
    """``run_load``'s schedule with one ``sendmmsg(2)`` per sub-slot instead of one ``sendto``
    per packet (Linux; through ctypes, as Python has no sendmmsg). Halves the sender's CPU per
    packet, so on a 2-core machine the sender stops being the limit before the receiver."""

    PAYLOAD = 160
    SLOTS = 20

    @staticmethod
    def available() -> bool:
        return sys.platform == "linux"

    def __init__(
        self, dests: list[tuple[str, int]], srtp: SrtpSender | None, slots: int = SLOTS
    ) -> None:
        import ctypes
        import secrets
        from ctypes import POINTER, Structure, c_char, c_int, c_size_t, c_uint, c_uint32, c_void_p

        class Iovec(Structure):
            _fields_ = (("base", c_void_p), ("len", c_size_t))

        class SockaddrIn(Structure):
            _fields_ = (
                ("family", ctypes.c_ushort),
                ("port", ctypes.c_uint16),
                ("addr", c_uint32),
                ("zero", c_char * 8),
            )

        class Msghdr(Structure):
            _fields_ = (
                ("name", c_void_p),
                ("namelen", c_uint32),
                ("iov", POINTER(Iovec)),
                ("iovlen", c_size_t),
                ("control", c_void_p),
                ("controllen", c_size_t),
                ("flags", c_int),
            )

        class Mmsghdr(Structure):
            _fields_ = (("hdr", Msghdr), ("len", c_uint))

        self.ctypes = ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.sendmmsg.argtypes = (c_int, c_void_p, c_uint, c_int)
        self.srtp = srtp
        self.slots = slots
        n = len(dests)
        self.n = n
        self.size = 12 + self.PAYLOAD + (10 if srtp else 0)
        self.addrs = (SockaddrIn * n)()
        # one pool for every leg's packet, written in place with struct.pack_into / slicing
        self.pool = bytearray(n * self.size)
        pool_addr = ctypes.addressof(c_char.from_buffer(self.pool))
        self.iovs = (Iovec * n)()
        # legs sorted by slot, so each sub-slot is one contiguous run of the message array
        self.order = [i for s in range(slots) for i in range(s, n, slots)]
        self.msgs = (Mmsghdr * n)()
        self.msg_size = ctypes.sizeof(Mmsghdr)
        loopback = int.from_bytes(socket.inet_aton("127.0.0.1"), "little")
        for k, i in enumerate(self.order):
            host, port = dests[i]
            assert host == "127.0.0.1", "the benchmark sends to loopback only"
            self.addrs[i].family = socket.AF_INET
            self.addrs[i].port = socket.htons(port)
            self.addrs[i].addr = loopback
            self.iovs[i].base = pool_addr + i * self.size
            self.iovs[i].len = self.size
            self.msgs[k].hdr.name = ctypes.addressof(self.addrs[i])
            self.msgs[k].hdr.namelen = ctypes.sizeof(SockaddrIn)
            self.msgs[k].hdr.iov = ctypes.pointer(self.iovs[i])
            self.msgs[k].hdr.iovlen = 1
        self.seq0 = [secrets.randbits(16) for _ in range(n)]
        self.ts0 = [secrets.randbits(32) for _ in range(n)]
        self.ssrc = [secrets.randbits(32) for _ in range(n)]
        for i in range(n):
            off = i * self.size
            self.pool[off : off + 12] = struct.pack("!BBHII", 0x80, 0, 0, 0, self.ssrc[i])
            self.pool[off + 12 : off + 12 + self.PAYLOAD] = b"\xff" * self.PAYLOAD
        self.bounds = []
        k = 0
        for s in range(slots):
            count = len(range(s, n, slots))
            self.bounds.append((k, count))
            k += count

    def run(self, duration: float, start_at: float) -> LoadReport:
        ctypes, libc = self.ctypes, self.libc
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        fd = sock.fileno()
        seq_ts = struct.Struct("!HI")
        pack_into = seq_ts.pack_into
        header = struct.Struct("!BBHII")
        payload = b"\xff" * self.PAYLOAD
        base = ctypes.addressof(self.msgs)
        order, pool, size = self.order, self.pool, self.size
        seq0, ts0, ssrc = self.seq0, self.ts0, self.ssrc
        protect = self.srtp.protect if self.srtp is not None else None
        sent, tick, max_lag = 0, 0, 0.0
        period, slot_len = 0.02, 0.02 / self.slots
        end = start_at + duration
        try:
            while start_at + tick * period < end:
                tick_start = start_at + tick * period
                for s, (first, count) in enumerate(self.bounds):
                    due = tick_start + s * slot_len
                    lag = time.monotonic() - due
                    if lag < 0:
                        time.sleep(-lag)
                    elif lag > max_lag:
                        max_lag = lag
                    for k in range(first, first + count):
                        i = order[k]
                        seq = (seq0[i] + tick) & 0xFFFF
                        ts = (ts0[i] + tick * 160) & 0xFFFFFFFF
                        if protect is None:
                            pack_into(pool, i * size + 2, seq, ts)
                        else:
                            plain = header.pack(0x80, 0, seq, ts, ssrc[i]) + payload
                            pool[i * size : (i + 1) * size] = protect(plain)
                    done = 0
                    while done < count:
                        r = libc.sendmmsg(
                            fd, base + (first + done) * self.msg_size, count - done, 0
                        )
                        if r < 0:
                            raise OSError(ctypes.get_errno(), "sendmmsg failed")
                        done += r
                    sent += count
                tick += 1
        finally:
            sock.close()
        finished = time.monotonic()
        return LoadReport(
            legs=self.n,
            packets_sent=sent,
            elapsed_s=finished - start_at,
            max_lag_ms=max_lag * 1000.0,
            finished_at=finished,
        )


# ------------------------------------------------------------------------------------------
# receivers


class RawReader:
    __slots__ = ("buf", "count", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray(BUFFER_SIZE)
        self.count = 0

    def on_readable(self) -> None:
        recv = self.sock.recvfrom_into
        buf = self.buf
        try:
            while True:
                recv(buf)
                self.count += 1
        except BlockingIOError:
            pass


class RawPeekReader(RawReader):
    """Drain while FIONREAD says a datagram is queued: no EAGAIN exception per wake-up."""

    __slots__ = ("nbuf",)

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.nbuf = bytearray(4)

    def on_readable(self) -> None:
        recv = self.sock.recvfrom_into
        buf = self.buf
        fd = self.sock.fileno()
        nbuf = self.nbuf
        try:
            while True:
                recv(buf)
                self.count += 1
                fcntl.ioctl(fd, termios.FIONREAD, nbuf)
                if not any(nbuf):
                    return
        except BlockingIOError:
            pass


class RawOnceReader(RawReader):
    """One datagram per wake-up; the level-triggered reader fires again if more are queued."""

    def on_readable(self) -> None:
        try:
            self.sock.recvfrom_into(self.buf)
            self.count += 1
        except BlockingIOError:
            pass


class CountingProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.count = 0

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.count += 1


@dataclass
class StepResult:
    loop: str
    mode: str
    legs: int
    sent: int
    received: int
    received_late: int
    loss: float
    never: float
    cpu: float
    sender_pps: float
    sender_lag_ms: float
    chunks: int
    sender_late_ms: float
    passed: bool | None
    """None: the sender delivered under 99% of the target rate, so the step measured the sender."""


async def run_step(
    mode: str,
    legs: int,
    step_s: float,
    conn: Connection,
    alloc: RtpPortAllocator,
    srtp: bool,
    batched: bool,
    slots: int,
) -> tuple[int, int, int, float, LoadReport, int]:
    loop = asyncio.get_running_loop()
    socks = [alloc.bind(HOST) for _ in range(legs)]
    ports = [s.getsockname()[1] for s in socks]
    key = new_master_key() if srtp else None
    counters: list[Callable[[], int]] = []
    closers: list[Callable[[], None]] = []
    chunks = 0
    codec = get_codec()

    def on_chunk(record: dict[str, Any]) -> None:
        nonlocal chunks
        codec.encode("AudioChunk", record)
        chunks += 1

    try:
        for sock in socks:
            if mode.startswith("raw"):
                reader = {"raw": RawReader, "rawpeek": RawPeekReader, "rawonce": RawOnceReader}[
                    mode
                ](sock)
                loop.add_reader(sock.fileno(), reader.on_readable)
                counters.append(lambda r=reader: r.count)  # type: ignore[misc]
                closers.append(lambda s=sock: loop.remove_reader(s.fileno()))  # type: ignore[misc]
            elif mode == "protocol":
                transport, proto = await loop.create_datagram_endpoint(CountingProtocol, sock=sock)
                counters.append(lambda p=proto: p.count)  # type: ignore[misc]
                closers.append(transport.close)
            else:
                leg = LegState("bench", "bench", "CALLER", on_chunk=on_chunk, dtmf_payload_type=101)
                rx = RtpReceiver(leg, sock, srtp=SrtpReceiver(key) if key is not None else None)
                rx.start()
                counters.append(lambda lg=leg: lg.packets_received)  # type: ignore[misc]
                closers.append(rx.close)
        dests = [(HOST, port) for port in ports]
        start_at = time.monotonic() + LEAD_S + legs / 20000  # pickling the address list
        conn.send((dests, step_s, start_at, key, batched, slots))
        report_f = loop.run_in_executor(None, conn.recv)

        def total() -> int:
            return sum(c() for c in counters)

        gc.collect()
        await asyncio.sleep(max(0.0, start_at - 0.1 - time.monotonic()))
        cpu0, wall0 = time.process_time(), time.monotonic()
        base = total()  # before the first packet: 0 unless something else sends to us
        # The deadline follows the sender's real finish (its report), so a sender running a
        # little late does not read as receiver loss.
        report: LoadReport = await report_f
        await asyncio.sleep(max(0.0, report.finished_at + GRACE_S - time.monotonic()))
        received = total() - base
        cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0)
        await asyncio.sleep(1.0)
        eventually = total() - base
        return report.packets_sent, received, eventually, cpu, report, chunks
    finally:
        for close in closers:
            close()
        for sock, port in zip(socks, ports, strict=True):
            sock.close()
            alloc.release(port)


def measure(
    loop_name: str,
    mode: str,
    legs: int,
    args: argparse.Namespace,
    conn: Connection,
    alloc: RtpPortAllocator,
) -> StepResult:
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop_name == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        sent, received, eventually, cpu, report, chunks = runner.run(
            run_step(mode, legs, args.step_s, conn, alloc, args.srtp, not args.sendto, args.slots)
        )
    loss = 1 - received / sent if sent else 1.0
    late_ms = (report.elapsed_s - args.step_s) * 1000
    offered = report.packets_per_second / (legs * 50)
    res = StepResult(
        loop=loop_name,
        mode=mode,
        legs=legs,
        sent=sent,
        received=received,
        received_late=eventually - received,
        loss=loss,
        never=1 - eventually / sent if sent else 1.0,
        cpu=cpu,
        sender_pps=report.packets_per_second,
        sender_lag_ms=report.max_lag_ms,
        chunks=chunks,
        sender_late_ms=late_ms,
        passed=None if offered < MIN_OFFERED else loss <= LOSS_LIMIT,
    )
    print(
        f"{res.loop:8s} {res.mode:8s} {res.legs:6d} {res.legs * 50:9d} {res.sent:9d} "
        f"{res.received:9d} {res.loss * 100:7.3f} {res.never * 100:7.3f} {res.cpu * 100:5.0f} "
        f"{res.sender_pps:9.0f} {res.sender_late_ms:8.1f} {res.chunks:7d}  "
        f"{ {True: 'ok', False: 'FAIL', None: 'sender-bound'}[res.passed] }",
        flush=True,
    )
    return res


def search(
    loop_name: str,
    mode: str,
    args: argparse.Namespace,
    conn: Connection,
    alloc: RtpPortAllocator,
    results: list[StepResult],
) -> int:
    """Largest leg count that passed: step up, then bisect ``--refine`` times."""
    best, worst = 0, None
    for legs in args.steps:
        res = measure(loop_name, mode, legs, args, conn, alloc)
        results.append(res)
        if res.passed is None:
            print(f"  (sender-bound at {legs} legs: {loop_name}/{mode} sustains at least {best})")
            return best
        if not res.passed:
            worst = legs
            break
        best = legs
    for _ in range(args.refine if worst is not None else 0):
        mid = (best + worst) // 2 // 50 * 50
        if mid <= best or mid >= worst:
            break
        res = measure(loop_name, mode, mid, args, conn, alloc)
        results.append(res)
        if res.passed is None:
            break
        if res.passed:
            best = mid
        else:
            worst = mid
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", default=",".join(map(str, DEFAULT_STEPS)), help="leg counts, ascending"
    )
    parser.add_argument("--step-s", type=float, default=10.0, help="seconds of load per step")
    parser.add_argument("--loops", default="asyncio,uvloop")
    parser.add_argument("--modes", default="raw,media")
    parser.add_argument("--srtp", action="store_true", help="SRTP on every leg (media mode)")
    parser.add_argument("--refine", type=int, default=2, help="bisection steps after a failure")
    parser.add_argument("--port-base", type=int, default=40000)
    parser.add_argument(
        "--slots", type=int, default=20, help="sub-slots per 20 ms tick the legs are spread over"
    )
    parser.add_argument(
        "--sendto",
        action="store_true",
        help="load with run_load's plain sendto (slower sender) instead of batched sendmmsg",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    args.steps = [int(s) for s in args.steps.split(",")]
    loops = [name for name in args.loops.split(",") if name]
    if "uvloop" in loops:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            print("uvloop is not installed: skipping it")
            loops.remove("uvloop")
    modes = [m for m in args.modes.split(",") if m]
    alloc = RtpPortAllocator(args.port_base, args.port_base + 2 * max(args.steps) + 1)

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    sender = ctx.Process(target=sender_worker, args=(child,), daemon=True)
    sender.start()
    results: list[StepResult] = []
    best: dict[tuple[str, str], int] = {}
    print(
        f"cpus: {os.cpu_count()}  step: {args.step_s:g} s  srtp: {args.srtp}  "
        f"pass: loss <= {LOSS_LIMIT:.1%} by end of window + {GRACE_S * 1000:.0f} ms"
    )
    print(
        f"{'loop':8s} {'mode':8s} {'legs':>6s} {'pps':>9s} {'sent':>9s} {'received':>9s} "
        f"{'loss%':>7s} {'never%':>7s} {'cpu%':>5s} {'sent_pps':>9s} {'late_ms':>8s} "
        f"{'chunks':>7s}"
    )
    try:
        for loop_name in loops:
            for mode in modes:
                best[(loop_name, mode)] = search(loop_name, mode, args, parent, alloc, results)
    finally:
        with contextlib.suppress(OSError):
            parent.send(None)
        sender.join(5)
    print()
    print("max legs at <= 0.1% loss (50 pps each):")
    for (loop_name, mode), legs in best.items():
        print(f"  {loop_name:8s} {mode:8s} {legs:6d} legs  ({legs * 50} packets/s)")
    for loop_name in loops:
        raw = best.get((loop_name, "raw"))
        media = best.get((loop_name, "media"))
        if raw and media is not None:
            print(f"  ratio media/raw on {loop_name}: {media / raw:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "results": [asdict(r) for r in results],
                    "best": {f"{k[0]}/{k[1]}": v for k, v in best.items()},
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
