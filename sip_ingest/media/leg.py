"""Per-leg media state: sequence tracking, reordering, statistics, DTMF events and audio chunks.

One :class:`LegState` per recorded stream (caller or agent). The receiver hands it every packet
that survived SRTP and source checks; everything else here is pure bookkeeping with no I/O, so it
is tested without sockets and costs a few microseconds per packet on the shared event loop.

Sequence numbers follow RFC 3550 appendix A.1: 16-bit numbers are extended with a wrap counter,
a jump of more than ``MAX_DROPOUT`` is believed only when the next packet confirms it (the remote
restarted its numbering), and a new SSRC restarts the sequence state but keeps the leg, its
statistics and its chunk counter -- endpoints change SSRC on re-INVITE or after a media restart,
and the recording must carry on as the same leg.

Chunks (``ingest.audio`` records) carry the raw G.711 payloads exactly as received, in sequence
order, so "bytes sent == bytes published" holds. Lost packets are left out and counted in
``missing_packets``; nothing is filled with silence here, because only the recording sink knows
whether it wants silence, concealment or nothing. A chunk is cut early wherever its bytes could not
be placed on the media clock at all: a new SSRC or sequence restart, a codec change, or an RTP
timestamp that does not continue the previous packet (silence suppression, audio muted while a
DTMF event is sent). A loss gap inside a chunk shifts the bytes after it by the missing packets'
duration, and the record does not say where the gap was; ``split_on_loss=True`` cuts a chunk at
every loss gap instead, so every chunk is a gap-free run and ``rtp_timestamp`` places every byte
exactly (at the price of more, shorter chunks on lossy links).

DTMF (RFC 4733) is counted, never recorded: the event code byte of a telephone-event payload is
not read at all, so a keyed card number cannot leak into statistics, records or logs. An event is
identified by its RTP timestamp (all packets of one key press share it), which makes the three
redundant end packets and the continuation packets count once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from sip_ingest.media.rtp import CLOCK_RATE, RtpPacket

__all__ = [
    "STATIC_AUDIO_PAYLOAD_TYPES",
    "AudioChunkRecord",
    "Codec",
    "DtmfEvent",
    "Leg",
    "LegState",
    "LegStats",
]

Leg = Literal["CALLER", "AGENT"]
Codec = Literal["PCMU", "PCMA"]
#: An ``AudioChunk`` record as ``schemas.codec`` encodes it.
AudioChunkRecord = dict[str, Any]

#: RFC 3551 static payload types; G.711 is never negotiated onto a dynamic number in practice.
STATIC_AUDIO_PAYLOAD_TYPES: Final[Mapping[int, Codec]] = {0: "PCMU", 8: "PCMA"}

# RFC 3550 A.1 constants: how far ahead a packet may jump, and how far behind it may arrive,
# before it is treated as a restart rather than loss or reordering.
MAX_DROPOUT: Final = 3000
MAX_MISORDER: Final = 100
_SEQ_MOD: Final = 1 << 16
_TS_MASK: Final = 0xFFFFFFFF
# ``_next`` while a new epoch's first packets are still held: the first packet to arrive is not
# necessarily the first one sent, so nothing counts as late until the reorder window has passed.
_UNSTARTED: Final = -(1 << 62)
#: Events kept with their times; beyond this only the count grows (bounded memory per leg).
MAX_DTMF_EVENTS_KEPT: Final = 1000


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """That a key was pressed, and when -- deliberately without which key."""

    at: datetime
    """UTC arrival time of the first packet of the event."""
    rtp_timestamp: int
    """Media-clock position of the event, so a redaction stage can mute the recording there."""


@dataclass(frozen=True, slots=True)
class LegStats:
    """A point-in-time copy of a leg's counters, for metadata records and metrics.

    Loss follows RFC 3550 6.4.1 so it compares with what phones and SBCs report: a packet that
    arrived too late for the audio still counts as received (it is in ``late``), and duplicates
    do not make up for lost packets.
    """

    packets_received: int
    """Packets past SRTP and the source check, duplicates and late ones included."""
    packets_expected: int
    packets_lost: int
    duplicates: int
    late: int
    """Arrived after the reorder window gave up on them; not in the audio."""
    reordered: int
    """Arrived after a later packet but in time, and were put back in order."""
    jitter_ms: float
    audio_packets: int
    audio_bytes: int
    chunks_emitted: int
    missing_in_chunks: int
    gaps_skipped: int
    """Sequence numbers the audio moved past without (lost, late, or a lost DTMF packet)."""
    ssrc_changes: int
    resyncs: int
    dtmf_events: int
    dtmf_event_times: tuple[DtmfEvent, ...]
    drops: Mapping[str, int] = field(default_factory=dict)
    last_packet_at: float | None = None

    @property
    def loss_ratio(self) -> float:
        return self.packets_lost / self.packets_expected if self.packets_expected else 0.0


class LegState:
    """Sequence, reorder, statistics, DTMF and chunking state of one leg.

    ``on_chunk`` receives each finished ``AudioChunk`` record on the event loop and must not
    block (the publisher enqueues it). ``now`` values passed to :meth:`on_packet` come from
    ``monotonic`` -- the same clock ``last_packet_at`` is reported in, which the call layer
    compares against ``rtp_inactivity_s``.
    """

    def __init__(
        self,
        call_id: str,
        workspace_id: str,
        leg: Leg,
        *,
        on_chunk: Callable[[AudioChunkRecord], None],
        chunk_ms: int = 1000,
        audio_payload_types: Mapping[int, Codec] = STATIC_AUDIO_PAYLOAD_TYPES,
        dtmf_payload_type: int | None = None,
        on_dtmf: Callable[[DtmfEvent], None] | None = None,
        reorder_ms: float = 60.0,
        reorder_packets: int = 5,
        split_on_loss: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if chunk_ms <= 0:
            raise ValueError("chunk_ms must be positive")
        if reorder_packets < 1:
            raise ValueError("reorder_packets must be at least 1")
        self.call_id = call_id
        self.workspace_id = workspace_id
        self.leg: Leg = leg
        self._on_chunk = on_chunk
        self._on_dtmf_cb = on_dtmf
        self._chunk_samples = chunk_ms * CLOCK_RATE // 1000
        self._audio_pts: dict[int, Codec] = dict(audio_payload_types)
        self._dtmf_pt = dtmf_payload_type
        self._reorder_s = reorder_ms / 1000.0
        self._reorder_packets = reorder_packets
        self._split_on_loss = split_on_loss
        self._mono = monotonic
        self._wall = wall_clock

        #: ``monotonic()`` time of the last packet accepted (after SRTP and source checks), so
        #: garbage sprayed at the port cannot keep an abandoned call alive.
        self.last_packet_at: float | None = None

        # counters
        self.packets_received = 0
        self.duplicates = 0
        self.late = 0
        self.reordered = 0
        self.audio_packets = 0
        self.audio_bytes = 0
        self.chunks_emitted = 0
        self.missing_in_chunks = 0
        self.gaps_skipped = 0
        self.ssrc_changes = 0
        self.resyncs = 0
        self.dtmf_events = 0
        self._dtmf_times: list[DtmfEvent] = []
        self._drops: dict[str, int] = {}
        self._received_unique = 0
        self._expected_prior = 0
        self._jitter_units = 0.0

        # sequence state (per SSRC epoch)
        self._ssrc: int | None = None
        self._cycles = 0
        self._max_seq = 0
        self._base_ext = 0
        self._bad_seq = -1
        self._bad_pkt: tuple[RtpPacket, float] | None = None
        self._next = _UNSTARTED  # extended seq the audio stream wants next
        self._skipped: set[int] = set()  # given-up seqs: if one still arrives, it is late
        self._held: dict[int, tuple[RtpPacket, float]] = {}
        self._transit: int | None = None
        self._dtmf_ts: int | None = None
        self._dtmf_ended = True

        # open chunk
        self._chunk_seq = 0
        self._parts: list[bytes] = []
        self._first_seq = 0
        self._first_ts = 0
        self._first_arrival = 0.0
        self._chunk_codec: Codec = "PCMU"
        self._chunk_missing = 0
        self._pending_missing = 0
        self._next_ts = 0
        self._last_size = 0

    # ---------------------------------------------------------------------------------------
    # input

    def on_packet(self, pkt: RtpPacket, now: float) -> None:
        """Account for one packet that arrived at ``now`` (``monotonic`` seconds)."""
        self.packets_received += 1
        self.last_packet_at = now
        seq = pkt.seq
        if pkt.ssrc == self._ssrc:
            max_seq = self._max_seq
            udelta = (seq - max_seq) & 0xFFFF
            if udelta < MAX_DROPOUT:
                if seq < max_seq:
                    self._cycles += _SEQ_MOD
                self._max_seq = seq
                ext = self._cycles + seq
                if ext == self._next and not self._held:
                    # The common case, inlined: the next packet in order, nothing waiting.
                    self._received_unique += 1
                    self._next = ext + 1
                    codec = self._audio_pts.get(pkt.payload_type)
                    if codec is None:
                        self._release_other(pkt, now)
                        return
                    transit = (round(now * CLOCK_RATE) - pkt.timestamp) & _TS_MASK
                    last = self._transit
                    self._transit = transit
                    if last is not None:
                        d = (transit - last) & _TS_MASK
                        if d > 0x7FFFFFFF:
                            d = 0x100000000 - d
                        self._jitter_units += (d - self._jitter_units) * 0.0625
                    self._audio(pkt, codec, now)
                    return
            elif udelta <= _SEQ_MOD - MAX_MISORDER:
                bad = self._bad_pkt
                if bad is None or seq != self._bad_seq:
                    # One packet far off the sequence: garbage, or the first of a restart that
                    # the next packet will confirm. Keep it aside so a restart loses nothing.
                    self._bad_seq = (seq + 1) & 0xFFFF
                    self._bad_pkt = (pkt, now)
                    self.drop("rtp_seq_jump")
                    return
                self.resyncs += 1
                self._undrop("rtp_seq_jump")
                first, first_now = bad
                self._restart(pkt.ssrc, first.seq)
                self._accept(first, first.seq, first_now)
                if seq < first.seq:
                    self._cycles += _SEQ_MOD
                self._max_seq = seq
                ext = self._cycles + seq
            else:
                # Behind the highest seen: reordered, late or duplicate; the ordering decides.
                ext = self._cycles + seq - (_SEQ_MOD if seq > max_seq else 0)
        else:
            if self._ssrc is not None:
                self.ssrc_changes += 1
            self._restart(pkt.ssrc, seq)
            ext = seq
        self._accept(pkt, ext, now)

    def drop(self, reason: str) -> None:
        """Count a packet dropped for ``reason``; the receiver reports its own drops here too."""
        self._drops[reason] = self._drops.get(reason, 0) + 1

    def _undrop(self, reason: str) -> None:
        left = self._drops.get(reason, 0) - 1
        if left > 0:
            self._drops[reason] = left
        else:
            self._drops.pop(reason, None)

    def set_payload_types(
        self, audio: Mapping[int, Codec] | None = None, dtmf: int | None = None
    ) -> None:
        """Adopt a renegotiated payload-type mapping (re-INVITE)."""
        if audio is not None:
            self._audio_pts = dict(audio)
        self._dtmf_pt = dtmf

    def flush(self) -> None:
        """Release everything held for reordering and emit the partial last chunk (call end)."""
        self._drain(self._mono(), force=True)
        self._emit()

    # ---------------------------------------------------------------------------------------
    # output

    def stats(self) -> LegStats:
        expected = self._expected_prior
        if self._ssrc is not None:
            expected += self._cycles + self._max_seq - self._base_ext + 1
        return LegStats(
            packets_received=self.packets_received,
            packets_expected=expected,
            packets_lost=max(0, expected - self._received_unique),
            duplicates=self.duplicates,
            late=self.late,
            reordered=self.reordered,
            jitter_ms=self._jitter_units * 1000.0 / CLOCK_RATE,
            audio_packets=self.audio_packets,
            audio_bytes=self.audio_bytes,
            chunks_emitted=self.chunks_emitted,
            missing_in_chunks=self.missing_in_chunks,
            gaps_skipped=self.gaps_skipped,
            ssrc_changes=self.ssrc_changes,
            resyncs=self.resyncs,
            dtmf_events=self.dtmf_events,
            dtmf_event_times=tuple(self._dtmf_times),
            drops=dict(self._drops),
            last_packet_at=self.last_packet_at,
        )

    @property
    def jitter_ms(self) -> float:
        return self._jitter_units * 1000.0 / CLOCK_RATE

    # ---------------------------------------------------------------------------------------
    # internals

    def _restart(self, ssrc: int, seq: int) -> None:
        """Start a new sequence epoch: finish the old one's audio, keep the leg's counters."""
        if self._ssrc is not None:
            self._drain(0.0, force=True)
            self._emit()
            self._expected_prior += self._cycles + self._max_seq - self._base_ext + 1
        self._ssrc = ssrc
        self._cycles = 0
        self._max_seq = seq
        self._base_ext = seq
        self._next = _UNSTARTED
        self._skipped.clear()
        self._bad_seq = -1
        self._bad_pkt = None
        self._transit = None
        self._dtmf_ts = None
        self._dtmf_ended = True

    def _accept(self, pkt: RtpPacket, ext: int, now: float) -> None:
        """Order a packet that is not simply the next one: hold, release, or classify it."""
        nxt = self._next
        if ext < nxt:
            skipped = self._skipped
            if ext in skipped:
                # Its gap was already given up on; the audio has moved past it.
                skipped.remove(ext)
                self.late += 1
                self._received_unique += 1
                self._jitter(pkt, now)
            else:
                self.duplicates += 1
            return
        held = self._held
        if ext in held:
            self.duplicates += 1
            return
        self._received_unique += 1
        self._jitter(pkt, now)
        if ext < self._cycles + self._max_seq:
            self.reordered += 1
        if ext < self._base_ext:  # sent before the packet that opened the epoch
            self._base_ext = ext
        held[ext] = (pkt, now)
        self._drain(now)

    def _drain(self, now: float, *, force: bool = False) -> None:
        """Release held packets in order; give up on a gap once the reorder window is spent."""
        held = self._held
        while held:
            nxt = self._next
            item = held.pop(nxt, None)
            if item is not None:
                self._next = nxt + 1
                self._release(item[0], item[1])
                continue
            if (
                not force
                and len(held) < self._reorder_packets
                and now - min(v[1] for v in held.values()) < self._reorder_s
            ):
                return
            first = min(held)
            self._next = first
            if nxt == _UNSTARTED:
                continue
            self._skip(nxt, first)

    def _skip(self, nxt: int, first: int) -> None:
        """Give up on packets ``nxt .. first-1``: they count as missing from the audio."""
        gap = first - nxt
        skipped = self._skipped
        skipped.update(range(nxt, first))
        if len(skipped) > 4 * MAX_MISORDER:
            # Anything further back than MAX_MISORDER is a sequence jump, never late.
            horizon = first - 2 * MAX_MISORDER
            self._skipped = {e for e in skipped if e >= horizon}
        self.gaps_skipped += gap
        if self._parts:
            self._pending_missing += gap
            self._next_ts = (self._next_ts + gap * self._last_size) & _TS_MASK
            if self._split_on_loss:
                self._emit()

    def _jitter(self, pkt: RtpPacket, now: float) -> None:
        """RFC 3550 A.8 interarrival jitter, in timestamp units, over audio packets only.

        Telephone-event packets are skipped: they all repeat the event's start timestamp, so
        their transit time grows by design and would read as jitter.
        """
        if pkt.payload_type not in self._audio_pts:
            return
        transit = (round(now * CLOCK_RATE) - pkt.timestamp) & _TS_MASK
        last = self._transit
        self._transit = transit
        if last is not None:
            d = (transit - last) & _TS_MASK
            if d > 0x7FFFFFFF:
                d = 0x100000000 - d
            self._jitter_units += (d - self._jitter_units) * 0.0625

    def _release(self, pkt: RtpPacket, arrival: float) -> None:
        """Take the next packet in sequence order into the audio (or the DTMF counter)."""
        codec = self._audio_pts.get(pkt.payload_type)
        if codec is None:
            self._release_other(pkt, arrival)
        else:
            self._audio(pkt, codec, arrival)

    def _release_other(self, pkt: RtpPacket, arrival: float) -> None:
        if pkt.payload_type == self._dtmf_pt:
            self._dtmf(pkt, arrival)
        else:
            self.drop("unexpected_payload_type")

    def _audio(self, pkt: RtpPacket, codec: Codec, arrival: float) -> None:
        payload = pkt.payload
        size = len(payload)
        if not size:
            self.drop("empty_payload")
            return
        ts = pkt.timestamp
        parts = self._parts
        if parts and (ts != self._next_ts or codec != self._chunk_codec):
            # Not the continuation of the open chunk on the media clock: cut it here.
            self._emit()
            parts = self._parts
        if parts:
            if self._pending_missing:
                self._chunk_missing += self._pending_missing
                self._pending_missing = 0
        else:
            self._first_seq = pkt.seq
            self._first_ts = ts
            self._first_arrival = arrival
            self._chunk_codec = codec
            self._chunk_missing = 0
            self._pending_missing = 0
        parts.append(payload)
        self._last_size = size
        self.audio_packets += 1
        self.audio_bytes += size
        ts = (ts + size) & _TS_MASK
        self._next_ts = ts
        if (ts - self._first_ts) & _TS_MASK >= self._chunk_samples:
            self._emit()

    def _dtmf(self, pkt: RtpPacket, arrival: float) -> None:
        payload = pkt.payload
        if len(payload) < 4:
            self.drop("bad_telephone_event")
            return
        # Only the E bit (octet 1) is read; octet 0, the key itself, is never looked at.
        ended = payload[1] >= 0x80
        ts = pkt.timestamp
        if ts != self._dtmf_ts:
            # A new timestamp without the marker while the previous event is still open is the
            # next segment of one long press (RFC 4733 2.5.1.3), not a new key.
            if pkt.marker or self._dtmf_ended:
                self.dtmf_events += 1
                event = DtmfEvent(at=self._wall_time(arrival), rtp_timestamp=ts)
                if len(self._dtmf_times) < MAX_DTMF_EVENTS_KEPT:
                    self._dtmf_times.append(event)
                if self._on_dtmf_cb is not None:
                    self._on_dtmf_cb(event)
            self._dtmf_ts = ts
            self._dtmf_ended = False
        if ended:
            self._dtmf_ended = True

    def _wall_time(self, arrival: float) -> datetime:
        return datetime.fromtimestamp(arrival - self._mono() + self._wall(), tz=UTC)

    def _emit(self) -> None:
        parts = self._parts
        if not parts:
            return
        self._parts = []
        self._pending_missing = 0
        missing = self._chunk_missing
        record: AudioChunkRecord = {
            "call_id": self.call_id,
            "workspace_id": self.workspace_id,
            "leg": self.leg,
            "seq": self._chunk_seq,
            "first_rtp_seq": self._first_seq,
            "rtp_timestamp": self._first_ts,
            "captured_at": self._wall_time(self._first_arrival),
            "codec": self._chunk_codec,
            "sample_rate": CLOCK_RATE,
            "payload": b"".join(parts),
            "missing_packets": missing,
        }
        self._chunk_seq += 1
        self.chunks_emitted += 1
        self.missing_in_chunks += missing
        self._on_chunk(record)
