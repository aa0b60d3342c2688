"""The UDP receive path of one leg, written for packets per second.

asyncio's ``DatagramProtocol`` reads every datagram into a fresh 256 KiB buffer and goes through
a transport and a protocol call per packet. Here a non-blocking socket is watched with
``loop.add_reader`` and read with ``recvfrom_into`` into one reused 2 KiB buffer, and everything
between the read and :class:`LegState` is a handful of attribute look-ups. ``add_reader`` exists
on both the stock loop and uvloop, so the same code runs on either.

How much to read per wake-up (``drain``) was measured with ``bench/rtp_receive.py`` (2 000 legs,
one packet queued per socket per loop iteration -- the shape of an ingest node's traffic, many
sockets at 50 packets/s each, rather than one busy socket). Draining until ``BlockingIOError``
pays one failed ``recvfrom`` and one exception per wake-up, and with ~1 packet per wake-up that is
paid per packet: the full media path cost 9.2 us/packet on asyncio and 8.5 on uvloop that way,
against 7.1 and 6.2 reading one datagram per callback (CPU time, best of 9; ``peek``, which asks
FIONREAD instead of failing, sat in between). So the default is ``once``: the reader is
level-triggered, so a socket with more queued is simply ready again on the next iteration, which
also keeps one flooded port from monopolising an iteration. ``eagain`` and ``peek`` remain for a
deployment with few, busy sockets.

Source addresses (symmetric RTP, RFC 4961 style latching). The address in the peer's SDP is often
not where its packets come from (NAT, SBCs), so by default the first valid packet *latches* the
leg to its source and packets from any other address are dropped (``foreign_source``) -- that
bounds RTP injection ("RTP bleed") to a race for the very first packet. Two exceptions: packets
from the SDP-negotiated address are always accepted and re-latch, and with SRTP any *authenticated*
packet re-latches, because only the holder of the key can produce one (a NAT rebinding mid-call
must not cut the recording). ``latch=False`` accepts the negotiated address only.

Every datagram that is not used is counted on the leg with a reason; none raises into the loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import socket
import termios
import time
from collections.abc import Callable
from typing import Final, Literal

import structlog

from sip_ingest.media.leg import LegState
from sip_ingest.media.ports import DEFAULT_RCVBUF, RtpPortAllocator, open_udp_socket
from sip_ingest.media.rtp import parse_rtp
from sip_ingest.media.srtp import SrtpReceiver

__all__ = ["BUFFER_SIZE", "DEFAULT_DRAIN", "MAX_DRAIN", "DrainMode", "RtpReceiver"]

log = structlog.get_logger(__name__)

#: Receive buffer per leg: G.711 RTP is ~172 bytes, SRTP ~182; anything filling the buffer was
#: truncated and is dropped as ``oversize`` rather than parsed from half a datagram.
BUFFER_SIZE: Final = 2048
#: Datagrams read per wake-up by the draining modes before yielding to other legs; whatever is
#: left is picked up on the next loop iteration.
MAX_DRAIN: Final = 256

Address = tuple[str, int]
DrainMode = Literal["once", "peek", "eagain"]
#: See the module docstring for the measurements behind the choice.
DEFAULT_DRAIN: DrainMode = "once"


class RtpReceiver:
    """Receives one leg's RTP (or SRTP) on its own UDP port and feeds :class:`LegState`."""

    def __init__(
        self,
        leg: LegState,
        sock: socket.socket,
        *,
        remote: Address | None = None,
        srtp: SrtpReceiver | None = None,
        latch: bool = True,
        allocator: RtpPortAllocator | None = None,
        clock: Callable[[], float] = time.monotonic,
        drain: DrainMode = DEFAULT_DRAIN,
    ) -> None:
        if drain not in ("once", "peek", "eagain"):
            raise ValueError(f"unknown drain mode {drain!r}")
        sock.setblocking(False)
        self._drain = drain
        self._queued = bytearray(4)
        self.leg = leg
        self._sock = sock
        self._fd = sock.fileno()
        self._remote = _normalise(remote)
        self._source: Address | None = None
        self._latch = latch
        self._srtp = srtp
        self._srtp_prev: SrtpReceiver | None = None
        self._allocator = allocator
        self._clock = clock
        self._buf = bytearray(BUFFER_SIZE)
        self._mv = memoryview(self._buf)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._error_logged = False
        #: Times the leg moved to another source address after the first latch.
        self.relatches = 0

    @classmethod
    def open(
        cls,
        leg: LegState,
        host: str,
        port: int | None = None,
        *,
        allocator: RtpPortAllocator | None = None,
        rcvbuf: int = DEFAULT_RCVBUF,
        remote: Address | None = None,
        srtp: SrtpReceiver | None = None,
        latch: bool = True,
        drain: DrainMode = DEFAULT_DRAIN,
    ) -> RtpReceiver:
        """Bind a socket for ``leg``: on ``port``, or on a port taken from ``allocator``.

        A port taken from ``allocator`` goes back to it when the receiver closes.
        """
        if port is None:
            if allocator is None:
                raise ValueError("give a port or an allocator")
            sock = allocator.bind(host, rcvbuf=rcvbuf)
        else:
            sock = open_udp_socket(host, port, rcvbuf=rcvbuf)
            allocator = None
        return cls(
            leg, sock, remote=remote, srtp=srtp, latch=latch, allocator=allocator, drain=drain
        )

    # ---------------------------------------------------------------------------------------

    @property
    def local_address(self) -> Address:
        host, port = self._sock.getsockname()[:2]
        return host, port

    @property
    def port(self) -> int:
        return self.local_address[1]

    @property
    def rcvbuf(self) -> int:
        """Receive buffer the kernel granted (Linux reports twice the usable size)."""
        return self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    @property
    def source(self) -> Address | None:
        """The address the leg is latched to, once a packet has been accepted."""
        return self._source

    @property
    def remote(self) -> Address | None:
        return self._remote

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start reading on ``loop`` (default: the running loop)."""
        if self._closed:
            raise RuntimeError("receiver is closed")
        if self._loop is not None:
            return
        self._loop = loop or asyncio.get_running_loop()
        reader = {"once": self._read_once, "peek": self._read_peek, "eagain": self._read_eagain}
        self._loop.add_reader(self._fd, reader[self._drain])

    def close(self) -> None:
        """Stop reading, close the socket and hand the port back; safe to call twice.

        The leg is not flushed here: the call layer decides when the last chunk is final.
        """
        if self._closed:
            return
        self._closed = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        port = self.port
        self._sock.close()
        if self._allocator is not None:
            self._allocator.release(port)

    def drain_pending(self) -> None:
        """Read every datagram already queued on the socket (call end).

        With one read per wake-up, packets can still sit in the kernel buffer when the BYE is
        handled (a burst sent just before hanging up); they are real audio of this call and
        must reach the leg before its last chunk is cut.
        """
        while not self._closed:
            self._read_eagain()  # up to MAX_DRAIN datagrams
            fcntl.ioctl(self._fd, termios.FIONREAD, self._queued)
            if not any(self._queued):
                return

    def set_remote(self, remote: Address | None) -> None:
        """Adopt the address of a new SDP offer/answer (re-INVITE); the latch starts over."""
        self._remote = _normalise(remote)
        self._source = None

    def set_srtp(self, srtp: SrtpReceiver | None) -> None:
        """Switch to new SRTP keys (re-INVITE).

        The old session stays as a fallback until the first packet authenticates under the new
        one: packets the peer sent before it switched are still in flight and are real audio.
        """
        self._srtp_prev = self._srtp
        self._srtp = srtp

    # ---------------------------------------------------------------------------------------
    # hot path

    def _read_once(self) -> None:
        """One datagram per readiness callback; the reader is level-triggered, so a socket
        with more queued is simply ready again on the next loop iteration."""
        try:
            n, addr = self._sock.recvfrom_into(self._buf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._socket_error(exc)
            return
        self._datagram(n, addr)

    def _read_peek(self) -> None:
        """Drain, asking the kernel (FIONREAD) whether another datagram is queued before each
        further read instead of reading until ``BlockingIOError``."""
        recv = self._sock.recvfrom_into
        buf = self._buf
        fd = self._fd
        queued = self._queued
        for _ in range(MAX_DRAIN):
            try:
                n, addr = recv(buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._socket_error(exc)
                return
            self._datagram(n, addr)
            # Size of the next queued datagram; 0 for none (or an empty one, which the next
            # callback reads: the socket stays readable).
            fcntl.ioctl(fd, termios.FIONREAD, queued)
            if not any(queued):
                return

    def _read_eagain(self) -> None:
        """Drain until ``BlockingIOError``: the classic non-blocking drain loop."""
        recv = self._sock.recvfrom_into
        buf = self._buf
        for _ in range(MAX_DRAIN):
            try:
                n, addr = recv(buf)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            except OSError as exc:
                self._socket_error(exc)
                return
            self._datagram(n, addr)

    def _socket_error(self, exc: OSError) -> None:
        # ICMP errors surface on the next read of an unconnected socket; nothing to drain
        # behind them, but they must not take the reader down.
        self.leg.drop("socket_error")
        if not self._error_logged:
            self._error_logged = True
            log.warning("rtp socket error", call_id=self.leg.call_id, error=str(exc))

    def _datagram(self, n: int, addr: Address) -> None:
        """Everything between the read and the leg, for one datagram in the receive buffer."""
        leg = self.leg
        if n >= BUFFER_SIZE:
            leg.drop("oversize")
            return
        if self._srtp is None:
            pkt = parse_rtp(self._mv, n)
        else:
            plain = self._unprotect(bytes(self._mv[:n]))
            if plain is None:
                return
            pkt = parse_rtp(plain)
        if isinstance(pkt, str):
            leg.drop(pkt)
            return
        if addr != self._source and not self._admit(addr):
            return
        try:
            leg.on_packet(pkt, self._clock())
        except Exception:
            # A bug must cost one packet, not the reader.
            leg.drop("internal_error")
            if not self._error_logged:
                self._error_logged = True
                log.exception("rtp packet handling failed", call_id=leg.call_id)

    def _unprotect(self, data: bytes) -> bytes | None:
        assert self._srtp is not None
        result = self._srtp.unprotect_or_reason(data)
        if isinstance(result, str):
            prev = self._srtp_prev
            if prev is None or isinstance(retry := prev.unprotect_or_reason(data), str):
                self.leg.drop(result)
                return None
            return retry
        self._srtp_prev = None
        return result

    def _admit(self, addr: Address) -> bool:
        """Decide on a packet from an address other than the latched one."""
        if addr[:2] == self._remote or (
            self._latch and (self._source is None or self._srtp is not None)
        ):
            if self._source is not None:
                self.relatches += 1
                log.info(
                    "rtp source moved",
                    call_id=self.leg.call_id,
                    leg=self.leg.leg,
                    authenticated=self._srtp is not None,
                )
            self._source = addr
            return True
        self.leg.drop("foreign_source")
        return False


def _normalise(addr: Address | None) -> Address | None:
    """``(ip, port)`` as ``recvfrom`` reports its first two items; SDP gives IP literals."""
    if addr is None:
        return None
    return addr[0], int(addr[1])
