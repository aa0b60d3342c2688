"""Media plane of the SIP ingest node: RTP/SRTP receive, per-leg statistics and audio chunks.

Flow per leg: :class:`RtpReceiver` (socket, SRTP, source latching) -> :class:`LegState`
(sequence, reorder, loss, jitter, DTMF count, chunker) -> ``on_chunk(AudioChunk record)``.
Nothing here publishes or touches SIP; the call layer wires legs to calls and the publisher.
"""

from sip_ingest.media.errors import MediaError, RtpPortsExhausted, SrtpKeyError, WavFormatError
from sip_ingest.media.leg import (
    STATIC_AUDIO_PAYLOAD_TYPES,
    AudioChunkRecord,
    Codec,
    DtmfEvent,
    Leg,
    LegState,
    LegStats,
)
from sip_ingest.media.ports import DEFAULT_RCVBUF, RtpPortAllocator, open_udp_socket
from sip_ingest.media.receiver import RtpReceiver
from sip_ingest.media.rtp import RtpPacket, build_rtp, parse_rtp
from sip_ingest.media.sender import DtmfPress, RtpSender, SendReport, run_load
from sip_ingest.media.srtp import (
    SrtpReceiver,
    SrtpSender,
    master_key_from_sdes,
    new_master_key,
    sdes_inline,
)

__all__ = [
    "DEFAULT_RCVBUF",
    "STATIC_AUDIO_PAYLOAD_TYPES",
    "AudioChunkRecord",
    "Codec",
    "DtmfEvent",
    "DtmfPress",
    "Leg",
    "LegState",
    "LegStats",
    "MediaError",
    "RtpPacket",
    "RtpPortAllocator",
    "RtpPortsExhausted",
    "RtpReceiver",
    "RtpSender",
    "SendReport",
    "SrtpKeyError",
    "SrtpReceiver",
    "SrtpSender",
    "WavFormatError",
    "build_rtp",
    "master_key_from_sdes",
    "new_master_key",
    "open_udp_socket",
    "parse_rtp",
    "run_load",
    "sdes_inline",
]
