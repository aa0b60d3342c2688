"""Connects the call layer to the media package: one RTP receiver + leg state per audio stream.

Audio of a call whose recording is off or suppressed is received (so the peer's media path
behaves normally and statistics stay truthful) but never leaves this process: the chunk sink is
a counter, not the publisher.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from callvault.settings import Settings
from sip_ingest.calls import Call, LegStats
from sip_ingest.media.leg import LegState
from sip_ingest.media.ports import RtpPortAllocator
from sip_ingest.media.receiver import RtpReceiver
from sip_ingest.media.srtp import SrtpReceiver
from sip_ingest.sip.sdp import NegotiatedMedia
from sip_ingest.uas import LegHandle, LegRole


class _Leg:
    def __init__(self, receiver: RtpReceiver, state: LegState, srtp_key: bytes | None) -> None:
        self.receiver = receiver
        self.state = state
        self.local_port = receiver.port
        self._srtp_key = srtp_key

    def stats(self) -> LegStats:
        s = self.state.stats()
        return LegStats(
            s.packets_received, s.packets_lost, s.jitter_ms, self.state.leg, s.chunks_emitted
        )

    def last_packet_at(self) -> float:
        return self.state.last_packet_at or 0.0

    @property
    def secure(self) -> bool:
        return self._srtp_key is not None

    def update(self, media: NegotiatedMedia) -> None:
        """Apply a re-INVITE's answer. SRTP state is rebuilt only when the key changed: a
        refresh that repeats the key must keep the rollover counter, or audio after packet
        65535 would stop authenticating."""
        self.state.set_payload_types({media.payload_type: media.codec}, media.dtmf_payload_type)  # type: ignore[dict-item]
        self.receiver.set_remote(media.remote_addr)
        key = media.srtp_remote.key_salt if media.srtp_remote is not None else None
        if key is not None and key != self._srtp_key:
            self.receiver.set_srtp(SrtpReceiver(key))
            self._srtp_key = key

    def close(self) -> None:
        self.receiver.drain_pending()
        self.state.flush()
        self.receiver.close()


class MediaBridge:
    def __init__(
        self,
        settings: Settings,
        publish_chunk: Callable[[dict[str, Any]], None],
        count_suppressed: Callable[[], None],
    ) -> None:
        self._settings = settings
        self._publish = publish_chunk
        self._suppressed = count_suppressed
        self.allocator = RtpPortAllocator.from_settings(settings.ingest)

    def allocate_port(self) -> int:
        return self.allocator.allocate()

    def release_port(self, port: int) -> None:
        self.allocator.release(port)

    def open_leg(
        self, call: Call, role: LegRole, media: NegotiatedMedia, *, publish_audio: bool
    ) -> LegHandle:
        def on_dtmf(_event: object) -> None:
            call.dtmf_events += 1  # the count only: digits are never kept

        def drop_chunk(_record: dict[str, Any]) -> None:
            self._suppressed()

        # what every content record of the call carries (see AudioChunk), stamped per chunk
        context = {
            "call_started_at": call.started_at,
            "agent_id": call.agent_id,
            "suppressed": call.suppressed,
        }

        def publish_chunk(record: dict[str, Any]) -> None:
            self._publish({**record, **context})

        state = LegState(
            call.call_id,
            call.workspace_id,
            role,
            on_chunk=publish_chunk if publish_audio else drop_chunk,
            chunk_ms=self._settings.ingest.chunk_ms,
            audio_payload_types={media.payload_type: media.codec},  # type: ignore[dict-item]
            dtmf_payload_type=media.dtmf_payload_type,
            on_dtmf=on_dtmf,
            # a chunk never spans a gap, so its RTP timestamp places every byte exactly and the
            # recording sink can rebuild the call with silence where packets were lost
            split_on_loss=True,
        )
        key = media.srtp_remote.key_salt if media.srtp_remote else None
        srtp = SrtpReceiver(key) if key is not None else None
        receiver = RtpReceiver.open(
            state,
            self._settings.ingest.sip_host,
            media.local_port,
            remote=media.remote_addr,
            srtp=srtp,
        )
        receiver.start()
        return _Leg(receiver, state, key)
