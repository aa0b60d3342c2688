"""Concurrent RTP legs one receiver process sustains, beside a raw UDP baseline in the same run.

    python bench/rtp_receive.py [--steps 100,200,400,...] [--step-s 10] [--loops asyncio,uvloop]
                                [--modes raw,media] [--srtp] [--refine 2] [--json out.json]

Each leg is one UDP socket on 127.0.0.1 receiving 50 packets/s of 160-byte G.711 (20 ms), as an
ingest node sees a call leg. The load comes from a separate process so the sender does not share
the receiver's GIL. It spreads the legs over ``--slots`` sub-slots of each 20 ms tick and sends
each sub-slot with one ``sendmmsg(2)`` (``--sendto``: ``sip_ingest.media.sender.run_load``'s
one ``sendto`` per packet, which on 2 cores becomes the limit first).

Modes, on the same kind of sockets (non-blocking, 1 MiB SO_RCVBUF, one ``add_reader`` each):
- raw:      one ``recvfrom_into`` into a 2 KiB buffer per wake-up, count; no parsing. The
            baseline: the same read strategy as the media path, minus everything after the read;
- media:    the real path: ``RtpReceiver`` (default drain, latching, optional SRTP) ->
            ``LegState`` (sequence, reorder, jitter, DTMF, chunking) -> Avro-encode every
            ``AudioChunk``; ``media-eagain`` / ``media-peek`` force the other drain modes;
- rawdrain / rawpeek: raw, draining until EAGAIN / while FIONREAD reports a datagram;
- protocol: asyncio's stock ``DatagramProtocol`` counting datagrams, for reference.

Two measurements:
- capacity: CPU time per packet when the receiver is never idle (every round queues one packet
  on every socket, then the loop drains them); best of N interleaved repetitions, so it holds up
  on a shared machine. It bounds legs per core once a receiver is saturated.
- paced:    real-time load, stepping the number of legs up until loss exceeds 0.1%.

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
import functools
import gc
import json
import multiprocessing as mp
import os
import socket
import statistics
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
from sip_ingest.media.receiver import BUFFER_SIZE, DEFAULT_DRAIN, RtpReceiver
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
    drops: dict[str, int]
    passed: bool | None
    """None: the sender delivered under 99% of the target rate, so the step measured the sender."""


class Receivers:
    """``legs`` sockets with the readers of one mode; the same set-up for every measurement."""

    def __init__(self, mode: str, legs: int, alloc: RtpPortAllocator, key: bytes | None) -> None:
        self.mode = mode
        self.alloc = alloc
        self.key = key
        self.socks = [alloc.bind(HOST) for _ in range(legs)]
        self.ports = [s.getsockname()[1] for s in self.socks]
        self.counters: list[Callable[[], int]] = []
        self.closers: list[Callable[[], object]] = []
        self.legs: list[LegState] = []
        self.chunks = 0
        self._codec = get_codec()

    def on_chunk(self, record: dict[str, Any]) -> None:
        self._codec.encode("AudioChunk", record)
        self.chunks += 1

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self.socks:
            if self.mode.startswith("raw"):
                kind = {"rawdrain": RawReader, "rawpeek": RawPeekReader, "raw": RawOnceReader}
                reader = kind[self.mode](sock)
                loop.add_reader(sock.fileno(), reader.on_readable)
                self.counters.append(lambda r=reader: r.count)  # type: ignore[misc]
                self.closers.append(functools.partial(loop.remove_reader, sock.fileno()))
            elif self.mode == "protocol":
                transport, proto = await loop.create_datagram_endpoint(CountingProtocol, sock=sock)
                self.counters.append(lambda p=proto: p.count)  # type: ignore[misc]
                self.closers.append(transport.close)
            else:
                leg = LegState(
                    "bench", "bench", "CALLER", on_chunk=self.on_chunk, dtmf_payload_type=101
                )
                srtp = SrtpReceiver(self.key) if self.key is not None else None
                drain = self.mode.partition("-")[2] or DEFAULT_DRAIN
                rx = RtpReceiver(leg, sock, srtp=srtp, drain=drain)  # type: ignore[arg-type]
                rx.start()
                self.legs.append(leg)
                self.counters.append(lambda lg=leg: lg.packets_received)  # type: ignore[misc]
                self.closers.append(rx.close)

    def total(self) -> int:
        return sum(c() for c in self.counters)

    def drops(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for leg in self.legs:
            for reason, n in leg.stats().drops.items():
                out[reason] = out.get(reason, 0) + n
        return out

    def close(self) -> None:
        for close in self.closers:
            close()
        for sock, port in zip(self.socks, self.ports, strict=True):
            sock.close()
            self.alloc.release(port)


def udp_rcvbuf_errors() -> int:
    """Kernel-wide count of datagrams dropped for a full socket buffer (``/proc/net/snmp``)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        lines = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines()]
        head, vals = [ln for ln in lines if ln[0] == "Udp:"][:2]
        return int(vals[head.index("RcvbufErrors")])
    return 0


async def run_step(
    mode: str,
    legs: int,
    step_s: float,
    conn: Connection,
    alloc: RtpPortAllocator,
    srtp: bool,
    batched: bool,
    slots: int,
) -> tuple[int, int, int, float, LoadReport, int, dict[str, int]]:
    loop = asyncio.get_running_loop()
    key = new_master_key() if srtp else None
    rx = Receivers(mode, legs, alloc, key)
    try:
        await rx.start()
        dests = [(HOST, port) for port in rx.ports]
        start_at = time.monotonic() + LEAD_S + legs / 20000  # pickling the address list
        conn.send((dests, step_s, start_at, key, batched, slots))
        report_f = loop.run_in_executor(None, conn.recv)
        gc.collect()
        await asyncio.sleep(max(0.0, start_at - 0.1 - time.monotonic()))
        cpu0, wall0 = time.process_time(), time.monotonic()
        kernel_drops0 = udp_rcvbuf_errors()
        base = rx.total()  # before the first packet: 0 unless something else sends to us
        # The deadline follows the sender's real finish (its report), so a sender running a
        # little late does not read as receiver loss.
        report: LoadReport = await report_f
        await asyncio.sleep(max(0.0, report.finished_at + GRACE_S - time.monotonic()))
        received = rx.total() - base
        cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0)
        await asyncio.sleep(1.0)
        eventually = rx.total() - base
        drops = rx.drops()
        kernel = udp_rcvbuf_errors() - kernel_drops0
        if kernel:
            drops["kernel_rcvbuf"] = kernel
        return report.packets_sent, received, eventually, cpu, report, rx.chunks, drops
    finally:
        rx.close()


async def run_capacity(
    mode: str, legs: int, rounds: int, alloc: RtpPortAllocator, srtp: bool
) -> tuple[float, int]:
    """CPU seconds per packet when the receiver is never idle: every round queues one packet
    on every socket (from this process, before the loop runs), then the loop drains them.

    Immune to the sender and to other load on the machine (it counts this process's CPU time,
    not wall time), and to the VM's wake-up costs; it is what bounds legs once a receiver is
    saturated, when each loop iteration finds many sockets ready.
    """
    key = new_master_key() if srtp else None
    protect = SrtpSender(key).protect if key is not None else None
    rx = Receivers(mode, legs, alloc, key)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = b"\xff" * 160
    header = struct.Struct("!BBHII")
    cpu = 0.0
    try:
        await rx.start()
        dests = [(HOST, port) for port in rx.ports]
        t = time.process_time()
        for _ in range(20):
            rx.total()
        check_cost = (time.process_time() - t) / 20
        gc.collect()
        target = 0
        for r in range(rounds):
            for i, dest in enumerate(dests):
                pkt = header.pack(0x80, 0, r, r * 160, i) + payload
                tx.sendto(protect(pkt) if protect is not None else pkt, dest)
            target += legs
            checks = 0
            c0 = time.process_time()
            while True:
                await asyncio.sleep(0)
                checks += 1
                if rx.total() >= target:
                    break
            cpu += time.process_time() - c0 - checks * check_cost
        return cpu / target, rx.chunks
    finally:
        tx.close()
        rx.close()


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def measure(
    loop_name: str,
    mode: str,
    legs: int,
    args: argparse.Namespace,
    conn: Connection,
    alloc: RtpPortAllocator,
) -> StepResult:
    with asyncio.Runner(loop_factory=loop_factory(loop_name)) as runner:
        sent, received, eventually, cpu, report, chunks, drops = runner.run(
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
        drops=drops,
        passed=None if offered < MIN_OFFERED else loss <= LOSS_LIMIT,
    )
    print(
        f"{res.loop:8s} {res.mode:8s} {res.legs:6d} {res.legs * 50:9d} {res.sent:9d} "
        f"{res.received:9d} {res.loss * 100:7.3f} {res.never * 100:7.3f} {res.cpu * 100:5.0f} "
        f"{res.sender_pps:9.0f} {res.sender_late_ms:8.1f} {res.chunks:7d}  "
        f"{ {True: 'ok', False: 'FAIL', None: 'sender-bound'}[res.passed] }"
        + (f"  drops: {res.drops}" if res.drops else ""),
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
) -> tuple[int, bool]:
    """Largest leg count that passed (and whether the sender stopped the search first)."""
    best, worst = 0, 0
    for legs in args.steps:
        res = measure(loop_name, mode, legs, args, conn, alloc)
        results.append(res)
        if res.passed is None:
            print(f"  (sender-bound at {legs} legs: {loop_name}/{mode} sustains at least {best})")
            return best, True
        if not res.passed:
            worst = legs
            break
        best = legs
    for _ in range(args.refine if worst else 0):
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
    return best, False


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
    parser.add_argument("--capacity-legs", type=int, default=2000)
    parser.add_argument("--capacity-rounds", type=int, default=30, help="0: skip")
    parser.add_argument("--capacity-reps", type=int, default=9)
    parser.add_argument(
        "--capacity-modes", default="raw,rawdrain,protocol,media,media-eagain,media-peek"
    )
    parser.add_argument("--no-paced", action="store_true", help="only the capacity measurement")
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
    cap_modes = [m for m in args.capacity_modes.split(",") if m]
    most = max(*args.steps, args.capacity_legs)
    alloc = RtpPortAllocator(args.port_base, args.port_base + 2 * most + 1)
    print(
        f"cpus: {os.cpu_count()}  load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        f"  srtp: {args.srtp}  media drain: {DEFAULT_DRAIN}"
    )

    capacity: dict[tuple[str, str], float] = {}
    if args.capacity_rounds:
        print(
            f"\ncapacity: {args.capacity_legs} legs x {args.capacity_rounds} rounds, one packet "
            f"per socket per round, CPU time of the receiver process; best of "
            f"{args.capacity_reps} interleaved repetitions (median in brackets)"
        )
        samples: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.capacity_reps):
            for loop_name in loops:
                for mode in cap_modes:
                    with asyncio.Runner(loop_factory=loop_factory(loop_name)) as runner:
                        per_packet, _ = runner.run(
                            run_capacity(
                                mode, args.capacity_legs, args.capacity_rounds, alloc, args.srtp
                            )
                        )
                    samples.setdefault((loop_name, mode), []).append(per_packet)
        for (loop_name, mode), values in samples.items():
            per_packet = min(values)
            capacity[(loop_name, mode)] = per_packet
            print(
                f"  {loop_name:8s} {mode:13s} {per_packet * 1e6:6.2f} us/packet "
                f"[{statistics.median(values) * 1e6:6.2f}] -> {1 / per_packet:8.0f} packets/s "
                f"= {1 / per_packet / 50:6.0f} legs per core",
                flush=True,
            )

    results: list[StepResult] = []
    best: dict[tuple[str, str], tuple[int, bool]] = {}
    if not args.no_paced:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        sender = ctx.Process(target=sender_worker, args=(child,), daemon=True)
        sender.start()
        print(
            f"\npaced: {args.step_s:g} s per step, 50 packets/s per leg over {args.slots} "
            f"sub-slots; pass: loss <= {LOSS_LIMIT:.1%} by the sender's end + "
            f"{GRACE_S * 1000:.0f} ms"
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
        print("\nmax legs at <= 0.1% loss, paced (>= : the sender ran out first):")
        for (loop_name, mode), (legs, bound) in best.items():
            mark = ">=" if bound else "  "
            print(f"  {loop_name:8s} {mode:8s} {mark}{legs:6d} legs  ({legs * 50} packets/s)")
        for loop_name in loops:
            if (loop_name, "raw") in best and (loop_name, "media") in best:
                (raw, raw_bound), (media, media_bound) = (
                    best[(loop_name, "raw")],
                    best[(loop_name, "media")],
                )
                if raw:
                    note = " (baseline sender-bound: an upper bound)" if raw_bound else ""
                    note = (
                        " (both sender-bound: not measured)" if raw_bound and media_bound else note
                    )
                    print(f"  ratio media/raw on {loop_name}: {media / raw:.2f}{note}")
    if capacity:
        print("\ncapacity ratio media/raw (packets per CPU-second):")
        for loop_name in loops:
            for mode in cap_modes:
                if mode.startswith("media") and (loop_name, "raw") in capacity:
                    ratio = capacity[(loop_name, "raw")] / capacity[(loop_name, mode)]
                    print(f"  {loop_name:8s} {mode:13s} {ratio:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "results": [asdict(r) for r in results],
                    "best": {f"{k[0]}/{k[1]}": list(v) for k, v in best.items()},
                    "capacity_s_per_packet": {f"{k[0]}/{k[1]}": v for k, v in capacity.items()},
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
