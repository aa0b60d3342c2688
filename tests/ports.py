"""Ports for services the tests start, chosen *below* the kernel's ephemeral range.

A port from ``bind(("", 0))`` comes from the ephemeral range (32768-60999 here), the same pool
every outgoing connection (each Kafka client!) draws its local port from, so it can be taken
again between "found free" and "bound by the service". Ports from fixed ranges below that pool
only collide with another deliberate listener, which the bind check catches.
"""

from __future__ import annotations

import random
import socket

#: test-stack ports that must never be handed out
_RESERVED = {21333, 21334, 21335, 21336, 21337, 29092, 29093}
SERVICE_RANGE = (30000, 32700)
#: RTP ranges for ingest nodes under test: even bases, 64 ports each
RTP_RANGE = (27000, 28990)

_handed_out: set[int] = set()


def _bindable(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port() -> int:
    """A port free for both TCP and UDP, not handed out before in this process."""
    for _ in range(500):
        port = random.randint(*SERVICE_RANGE)
        if port not in _RESERVED and port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port in the test service range")


_next_rtp_slot = random.randrange(0, 1000)


def rtp_port_range(size: int = 64) -> tuple[int, int]:
    """The next free slot of the RTP range, round robin. Slots are reused once their node has
    stopped (the bind check sees it), so a long suite never runs out; round robin keeps a just
    stopped node's ports (and any late packets to them) out of the next test for a while."""
    global _next_rtp_slot
    slots = (RTP_RANGE[1] - RTP_RANGE[0]) // size
    for _ in range(slots):
        base = RTP_RANGE[0] + (_next_rtp_slot % slots) * size
        _next_rtp_slot += 1
        if all(_bindable(p) for p in range(base, base + size, 2)):
            return base, base + size - 2
    raise RuntimeError("no free RTP range")
