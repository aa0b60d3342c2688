"""RTP port allocation: even ports with room for RTCP, FIFO reuse, clean exhaustion."""

from __future__ import annotations

import socket

import pytest

from callvault.settings import IngestSettings
from sip_ingest.media.errors import MediaError, RtpPortsExhausted
from sip_ingest.media.ports import RtpPortAllocator, open_udp_socket


def test_even_ports_with_rtcp_inside_the_range() -> None:
    alloc = RtpPortAllocator(20001, 20010)
    ports = [alloc.allocate() for _ in range(alloc.capacity)]
    assert ports == [20002, 20004, 20006, 20008]  # 20010 excluded: 20011 is out of range
    assert all(p % 2 == 0 and p + 1 <= 20010 for p in ports)


def test_exhaustion_is_a_clear_retriable_error() -> None:
    alloc = RtpPortAllocator(30000, 30002)
    assert alloc.capacity == 1
    alloc.allocate()
    with pytest.raises(RtpPortsExhausted, match="30000-30002") as info:
        alloc.allocate()
    assert isinstance(info.value, MediaError)
    assert info.value.retriable


def test_release_is_fifo_and_idempotent() -> None:
    alloc = RtpPortAllocator(30000, 30006)
    a, b = alloc.allocate(), alloc.allocate()
    alloc.release(a)
    alloc.release(a)  # second release: no effect
    alloc.release(12345)  # unknown: no effect
    assert alloc.in_use == 1
    # the released port goes to the back: the never-used 30004 comes first
    assert alloc.allocate() == 30004
    assert alloc.allocate() == a
    assert b == 30002


def test_from_settings() -> None:
    alloc = RtpPortAllocator.from_settings(IngestSettings(rtp_port_min=20000, rtp_port_max=20999))
    assert alloc.capacity == 500  # 20000, 20002, ... 20998 (+1 = 20999)


def test_invalid_ranges() -> None:
    with pytest.raises(ValueError):
        RtpPortAllocator(30000, 30000)
    with pytest.raises(ValueError):
        RtpPortAllocator(40000, 30000)


def even_busy_socket() -> socket.socket:
    """A socket bound to an even port whose neighbour +2 is probably free."""
    held = []
    try:
        for _ in range(50):
            sock = open_udp_socket("127.0.0.1", 0)
            if sock.getsockname()[1] % 2 == 0:
                return sock
            held.append(sock)
    finally:
        for s in held:
            s.close()
    pytest.skip("no even ephemeral port")


def test_bind_skips_a_port_held_by_someone_else() -> None:
    busy = even_busy_socket()
    port = busy.getsockname()[1]
    try:
        alloc = RtpPortAllocator(port, port + 5)
        sock = alloc.bind("127.0.0.1")
        try:
            assert sock.getsockname()[1] == port + 2
            assert alloc.in_use == 1
            assert not sock.getblocking()
            # granted buffer is at least what we asked for (Linux reports double)
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 1 << 20
        finally:
            sock.close()
    finally:
        busy.close()


def test_bind_exhausted_when_every_port_is_busy() -> None:
    busy = even_busy_socket()
    port = busy.getsockname()[1]
    try:
        alloc = RtpPortAllocator(port, port + 1)
        with pytest.raises(RtpPortsExhausted, match="other processes"):
            alloc.bind("127.0.0.1")
        assert alloc.in_use == 0
    finally:
        busy.close()
