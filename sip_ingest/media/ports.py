"""RTP port allocation and UDP socket set-up for media legs.

Each leg gets an even port (RFC 3550 section 11: RTP on even, RTCP on the next odd port); RTCP is
not bound because nothing here consumes receiver reports, but the odd port is kept out of the
pool so a peer that sends RTCP never lands on another call's RTP socket.

Free ports are reused first-in first-out: a port released by a finished call goes to the back of
the queue, so stray packets from that call's peer (still in flight, or from a PBX that has not
processed the BYE yet) are unlikely to reach the next call that binds it.
"""

from __future__ import annotations

import errno
import socket
from collections import deque
from typing import TYPE_CHECKING, Final

from sip_ingest.media.errors import RtpPortsExhausted

if TYPE_CHECKING:
    from callvault.settings import IngestSettings

__all__ = ["DEFAULT_RCVBUF", "RtpPortAllocator", "open_udp_socket"]

#: Bytes of kernel receive buffer per leg: ~1300 G.711 packets (26 s of one leg) absorb a GC
#: pause or a Kafka hiccup on the event loop without kernel drops. Capped by net.core.rmem_max.
DEFAULT_RCVBUF: Final = 1 << 20


def open_udp_socket(host: str, port: int, *, rcvbuf: int = DEFAULT_RCVBUF) -> socket.socket:
    """A bound, non-blocking UDP socket with an enlarged receive buffer.

    Non-blocking because the receiver drains it until ``BlockingIOError`` from an event-loop
    reader callback. The buffer request is best effort: the kernel silently caps it at
    ``net.core.rmem_max``; read ``SO_RCVBUF`` back to see what was granted.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class RtpPortAllocator:
    """Hands out even RTP ports of ``[port_min, port_max]``, each with its RTCP port inside.

    Not thread-safe: it belongs to the event loop that owns the calls.
    """

    def __init__(self, port_min: int, port_max: int) -> None:
        first = port_min + (port_min & 1)
        if not 0 < port_min <= port_max <= 65535:
            raise ValueError(f"invalid RTP port range {port_min}-{port_max}")
        ports = range(first, port_max, 2)  # port_max excluded: port + 1 must be in range
        if not ports:
            raise ValueError(f"RTP port range {port_min}-{port_max} holds no even port pair")
        self.port_min = port_min
        self.port_max = port_max
        self._free: deque[int] = deque(ports)
        self._in_use: set[int] = set()

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> RtpPortAllocator:
        return cls(settings.rtp_port_min, settings.rtp_port_max)

    @property
    def capacity(self) -> int:
        """Legs the range can hold at once."""
        return len(self._free) + len(self._in_use)

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    @property
    def available(self) -> int:
        return len(self._free)

    def allocate(self) -> int:
        """Reserve the least recently used free port."""
        if not self._free:
            raise RtpPortsExhausted(
                f"all {self.capacity} RTP ports of {self.port_min}-{self.port_max} are in use"
            )
        port = self._free.popleft()
        self._in_use.add(port)
        return port

    def release(self, port: int) -> None:
        """Return ``port`` to the pool; releasing a port that is not allocated does nothing.

        Idempotent so every teardown path (BYE, CANCEL, timeout, error) may release without
        coordinating with the others.
        """
        if port in self._in_use:
            self._in_use.remove(port)
            self._free.append(port)

    def bind(self, host: str, *, rcvbuf: int = DEFAULT_RCVBUF) -> socket.socket:
        """Allocate a port and bind a UDP socket to it, skipping ports another process holds.

        A port found busy goes to the back of the queue (it may be free later) and the next one is
        tried, so a foreign listener inside the range costs one failed ``bind`` per pass, not an
        outage. Raises :class:`RtpPortsExhausted` when no port of the range can be bound.
        """
        for _ in range(len(self._free)):
            port = self.allocate()
            try:
                return open_udp_socket(host, port, rcvbuf=rcvbuf)
            except OSError as exc:
                self.release(port)
                if exc.errno != errno.EADDRINUSE:
                    raise
        raise RtpPortsExhausted(
            f"no RTP port of {self.port_min}-{self.port_max} could be bound on {host} "
            f"({self.in_use} in use by calls, the rest by other processes)"
        )
