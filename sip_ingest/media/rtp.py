"""RTP fixed-header parsing and building (RFC 3550 section 5.1).

Parsing is on the per-packet hot path of every leg, so it is one ``struct.unpack_from`` over the
receive buffer and a single copy of the payload; nothing else is materialised (CSRC identifiers and
header-extension contents are skipped, not decoded, because no stage uses them). A malformed
datagram yields a short reason string instead of raising: building and catching an exception per
garbage packet would cost more than the parse, and a flood of garbage is exactly when the receive
loop must stay cheap. The reason doubles as the drop-counter label.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CLOCK_RATE",
    "HEADER",
    "MIN_HEADER_SIZE",
    "RTP_VERSION",
    "RtpPacket",
    "build_rtp",
    "parse_rtp",
]

RTP_VERSION: Final = 2
MIN_HEADER_SIZE: Final = 12
#: G.711 and RFC 4733 telephone-event both tick at 8 kHz, so one clock serves a whole leg.
CLOCK_RATE: Final = 8000

HEADER: Final = struct.Struct("!BBHII")
_EXT_LEN: Final = struct.Struct("!H")
_unpack_header = HEADER.unpack_from
_unpack_ext_len = _EXT_LEN.unpack_from

# Drop reasons. Plain strings so they can label a Prometheus counter as they are.
SHORT: Final = "rtp_short"
BAD_VERSION: Final = "rtp_version"
BAD_CSRC: Final = "rtp_csrc_overflow"
BAD_EXTENSION: Final = "rtp_extension_overflow"
BAD_PADDING: Final = "rtp_padding"
RTCP_MUX: Final = "rtcp_mux"


@dataclass(slots=True)
class RtpPacket:
    """One parsed RTP packet. ``payload`` is an owned copy: the receive buffer is reused."""

    payload_type: int
    marker: bool
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes
    csrc_count: int = 0


def parse_rtp(data: bytes | bytearray | memoryview, length: int | None = None) -> RtpPacket | str:
    """Parse ``data[:length]`` as RTP; return the packet or a drop reason (never raises).

    ``length`` lets the receiver parse straight out of its reusable ``recvfrom_into`` buffer
    without slicing it first. Padding is stripped and the header extension skipped; RTCP that
    arrives on the RTP port (RFC 5761 multiplexing, payload types 72-76 with the marker bit) is
    reported as ``rtcp_mux`` so it is not mistaken for audio.
    """
    n = len(data) if length is None else length
    if n < MIN_HEADER_SIZE:
        return SHORT
    b0, b1, seq, timestamp, ssrc = _unpack_header(data, 0)
    if b0 >> 6 != RTP_VERSION:
        return BAD_VERSION
    csrc_count = b0 & 0x0F
    offset = MIN_HEADER_SIZE + 4 * csrc_count
    if offset > n:
        return BAD_CSRC
    if b0 & 0x10:
        if offset + 4 > n:
            return BAD_EXTENSION
        offset += 4 + 4 * _unpack_ext_len(data, offset + 2)[0]
        if offset > n:
            return BAD_EXTENSION
    end = n
    if b0 & 0x20:
        # The last octet counts the padding octets, itself included, so it can never be 0.
        pad = data[n - 1] if n > offset else 0
        if pad == 0 or offset + pad > n:
            return BAD_PADDING
        end = n - pad
    payload_type = b1 & 0x7F
    if 72 <= payload_type <= 76:
        return RTCP_MUX
    return RtpPacket(
        payload_type, b1 >= 0x80, seq, timestamp, ssrc, bytes(data[offset:end]), csrc_count
    )


def build_rtp(
    payload_type: int,
    seq: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    *,
    marker: bool = False,
) -> bytes:
    """Serialise a minimal RTP packet (no CSRC, extension or padding), wrapping seq and timestamp.

    Wrapping here rather than at every caller keeps senders free to count with plain ints.
    """
    return (
        HEADER.pack(
            0x80,
            (0x80 if marker else 0) | (payload_type & 0x7F),
            seq & 0xFFFF,
            timestamp & 0xFFFFFFFF,
            ssrc & 0xFFFFFFFF,
        )
        + payload
    )
