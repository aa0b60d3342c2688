"""A bounded, append-only disk journal for records Kafka could not take yet.

Layout: numbered segment files (``<id>.seg``, each opening with a header) holding
:mod:`~sip_ingest.publish.framing` frames, plus ``checkpoint.json``, the position up to which
Kafka acknowledged the records. ``checkpoint.json`` is replaced atomically (write, fsync, rename,
fsync the directory), so after any crash it is either the old or the new position: a stale one
replays records Kafka already has (duplicates, which every consumer tolerates through event
ids, chunk sequence numbers and segment ids) and never skips one it does not have.

Durability (fsync) policy. ``append`` only hands the frame to the kernel (one ``write``); it
never fsyncs, because it runs on the media event loop and an fsync can stall for tens of
milliseconds on a busy disk. :meth:`Journal.sync` fsyncs the segments written since the last
call, the directory when segments were created, and the checkpoint; the publisher calls it from
a worker thread every ``fsync_interval_s`` (200 ms by default) and at shutdown. Consequences:

- a crash of the ingest *process* loses nothing that ``append`` accepted (the page cache
  survives it);
- a kernel crash or power cut loses at most the last interval of spooled records; what was
  half-written is caught by length/CRC at the next open, truncated, logged and reported, and the
  journal carries on.

Space. ``max_bytes`` bounds the segment files on disk, acknowledged-but-not-yet-deleted bytes
included (they still occupy the disk). When an append would cross it the append is refused with
:class:`JournalFull`. Segments whose records are all acknowledged are deleted by ``sync``.

Encryption at rest. The records are raw call audio, transcripts and caller numbers, so every
segment written is encrypted with AES-256-GCM under the journal key
(:mod:`~sip_ingest.publish.journal_key`: a 0600 file outside the journal directory). Bytes::

    segment = header | frame*
    header  = "CVJRNL02" | key_id (8)
    key_id  = sha256("callvault-journal-key-id" | key)[:8]
    frame   = length (u32 LE) | crc32 (u32 LE) | stored     (CRC over length and stored)
    stored  = nonce (12) | AES-256-GCM(key, nonce, plain, aad)  (len(plain) + 16, tag last)
    aad     = header (16) | segment id (u64 LE) | offset of the frame in its segment (u64 LE)
    plain   = the record's fields, as in framing.py

``length`` and the CRC cover ``stored``, so torn writes are still found (and cut) without the
key, and nothing is decrypted at open. The AAD binds each frame to its place, not only to its
key: a frame copied into another segment or to another offset does not authenticate, and
neither do the frames after one cut out of the middle (the header alone as AAD would have let
frames move between segments of one journal). Two journals sharing one key file are not told
apart; each node creates its own key. Nonces are random rather than derived from the place,
because a place is reused after a torn tail is cut or a failed write is rolled back. One
``AESGCM`` object serves the whole journal; appends seal on the event loop (microseconds per
8 KB chunk).

Segments written before encryption at rest open with the 8-byte magic ``CVJRNL01`` and hold
``plain`` in their frames; they are still read and drained (migration), never written again:
the first append after an open always starts a new segment, and new segments are encrypted.
A ``CVJRNLnn`` header of an unknown version stops the open instead of being deleted as garbage.

Two failures look alike but are handled oppositely:

- a segment whose header names another key id than the key file's (the key file was lost and
  recreated, or replaced): **not** corruption. Opening the journal fails with
  :class:`JournalKeyError` naming the segments and both key ids, before anything on disk is
  touched; the records wait for the right key file. A key file that is missing while encrypted
  segments exist is not recreated (a fresh key could never read them), same error.
- a frame whose CRC matches but which fails authentication under the right key (tampering, or
  damage the CRC missed): corruption, reported through ``on_corruption`` like a checksum
  mismatch, and the rest of that segment is skipped; the journal carries on.

Threads. ``append`` and ``ack`` run on the event loop; ``read``, ``sync`` and ``close`` may run in
worker threads. One lock guards the segment table; file I/O of ``read`` and ``sync`` happens
outside it, so an append never waits for an fsync.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NamedTuple

import structlog

from callvault.files import fsync_dir
from sip_ingest.publish.errors import JournalError, JournalFull, JournalKeyError
from sip_ingest.publish.framing import (
    FRAME_HEADER,
    MAX_PAYLOAD,
    Record,
    decode_payload,
    encode_payload,
    frame,
    frame_crc,
    plausible_length,
)
from sip_ingest.publish.journal_key import (
    KEY_ID_SIZE,
    SEAL_OVERHEAD,
    JournalKey,
    load_journal_key,
)

log = structlog.get_logger(__name__)

#: Magic of the segments this version writes: encrypted, followed by the key id.
SEGMENT_MAGIC = b"CVJRNL02"
#: Magic of plaintext segments written before encryption at rest; read and drained only.
SEGMENT_MAGIC_V1 = b"CVJRNL01"
_MAGIC_FAMILY = b"CVJRNL"
#: Header size of the segments written now (magic + key id).
SEGMENT_HEADER = len(SEGMENT_MAGIC) + KEY_ID_SIZE
_FRAME_PLACE = struct.Struct("<QQ")
_SUFFIX = ".seg"
_CHECKPOINT = "checkpoint.json"
_LOCK = "journal.lock"


class JournalPosition(NamedTuple):
    """A place in the journal: segment id and byte offset in that segment."""

    segment: int
    offset: int


class JournalEntry(NamedTuple):
    record: Record
    #: Where this record ends: ``ack(position)`` acknowledges it and everything before it.
    position: JournalPosition


@dataclass(frozen=True)
class Corruption:
    """Bytes the journal could not read back and has given up on (reported, never raised)."""

    segment: int
    offset: int
    discarded_bytes: int
    reason: str


@dataclass
class _Segment:
    id: int
    path: Path
    #: The header bytes: ``SEGMENT_MAGIC_V1`` (plaintext) or ``SEGMENT_MAGIC`` + key id.
    header: bytes
    #: Bytes on disk.
    size: int
    #: Readable end: frames at or past it are not returned (a torn or corrupt tail).
    end: int
    #: Write descriptor while this is the segment appends go to.
    fd: int | None = None

    @property
    def encrypted(self) -> bool:
        return self.header != SEGMENT_MAGIC_V1

    def aad(self, offset: int) -> bytes:
        """Associated data of the frame at ``offset``: header, segment id, offset."""
        return self.header + _FRAME_PLACE.pack(self.id, offset)


class Journal:
    """Crash-safe FIFO of records on disk; see the module docstring for the guarantees."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        *,
        key_file: Path,
        segment_bytes: int | None = None,
        on_corruption: Callable[[Corruption], None] | None = None,
    ) -> None:
        """Open (creating if needed) the journal in ``directory``, encrypted with the key in
        ``key_file`` (created if missing and no segment needs an older key).

        Raises :class:`JournalKeyError` when the key cannot be used or is not the one the
        segments were written with (nothing is changed on disk then), JournalError otherwise.
        """
        self.directory = Path(directory)
        self.key_file = Path(key_file)
        self.max_bytes = max_bytes
        #: Small enough that drained space comes back in steps, large enough to roll rarely.
        self.segment_bytes = segment_bytes or max(64 * 1024, min(64 * 1024 * 1024, max_bytes // 8))
        self._on_corruption = on_corruption
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._segments: list[_Segment] = []
        self._unsynced_fds: list[int] = []
        self._retired_fds: list[int] = []
        self._dir_dirty = False
        self._checkpoint_dirty = False
        self._data_dirty = False
        self._closed = False
        self._disk_bytes = 0
        self._key: JournalKey
        self._header = b""
        self._lock_fd = self._take_lock()
        try:
            self._acked = self._recover()
        except BaseException:
            os.close(self._lock_fd)
            raise

    # -- public API ------------------------------------------------------------------------

    @property
    def bytes_on_disk(self) -> int:
        return self._disk_bytes

    @property
    def acked(self) -> JournalPosition:
        return self._acked

    @property
    def key_id(self) -> str:
        """Hex id of the journal key (safe to log: a digest, not the key)."""
        return self._key.key_id.hex()

    def is_drained(self) -> bool:
        """True when every appended record has been acknowledged."""
        with self._lock:
            return self._drained_locked()

    def append(self, record: Record) -> None:
        """Write one record after all earlier ones; raises JournalFull or JournalError.

        Never fsyncs (see the module docstring); on a failed write the segment is cut back to
        its previous length so no half frame stays behind. The payload is sealed under the lock,
        because its associated data holds the offset it is written at (microseconds for an
        8 KB audio chunk).
        """
        payload = encode_payload(record)
        if len(payload) + SEAL_OVERHEAD > MAX_PAYLOAD:
            raise JournalError(f"record of {len(payload)} bytes exceeds the journal frame limit")
        frame_size = FRAME_HEADER.size + len(payload) + SEAL_OVERHEAD
        with self._lock:
            if self._closed:
                raise JournalError("journal is closed")
            active = self._segments[-1] if self._segments else None
            roll = (
                active is None
                or active.fd is None
                or (
                    active.size > len(active.header)
                    and active.size + frame_size > self.segment_bytes
                )
            )
            needed = frame_size + (SEGMENT_HEADER if roll else 0)
            if self._disk_bytes + needed > self.max_bytes:
                raise JournalFull(
                    f"journal holds {self._disk_bytes} of {self.max_bytes} bytes; "
                    f"a {frame_size}-byte record does not fit"
                )
            if roll:
                active = self._roll_locked()
            assert active is not None and active.fd is not None
            data = frame(self._key.seal(payload, active.aad(active.size)))
            try:
                _write_all(active.fd, data)
            except OSError as exc:
                try:
                    os.ftruncate(active.fd, active.size)
                except OSError:
                    # The file's end is unknown now, and the next frame's AAD names its offset:
                    # later records go to a new segment.
                    self._retire_active_locked()
                raise JournalError(f"cannot write to {active.path}: {exc}") from exc
            active.size += len(data)
            active.end = active.size
            self._disk_bytes += len(data)
            self._data_dirty = True

    def read(self, max_records: int = 1000, max_bytes: int = 4 * 1024 * 1024) -> list[JournalEntry]:
        """The oldest unacknowledged records, in append order (does not acknowledge them)."""
        return self._read_from(self._acked, max_records, max_bytes)

    def replay(self) -> Iterator[JournalEntry]:
        """Every unacknowledged record in append order, including ones appended meanwhile."""
        position = self._acked
        while True:
            batch = self._read_from(position, 1000, 4 * 1024 * 1024)
            if not batch:
                return
            yield from batch
            position = batch[-1].position

    def ack(self, position: JournalPosition) -> None:
        """Record that everything up to ``position`` is in Kafka; persisted by the next sync."""
        with self._lock:
            if position > self._acked:
                self._acked = position
                self._checkpoint_dirty = True

    @property
    def needs_sync(self) -> bool:
        return (
            self._data_dirty
            or self._checkpoint_dirty
            or self._dir_dirty
            or bool(self._retired_fds)
            or (bool(self._segments) and self.is_drained())
        )

    def sync(self) -> None:
        """Make appends and the acknowledged position durable; delete drained segments.

        Blocking (fsync); the publisher runs it in a worker thread.
        """
        with self._sync_lock:
            with self._lock:
                if self._closed:
                    return
                if self._segments and self._drained_locked():
                    self._retire_active_locked()  # next append starts a fresh segment
                to_sync = list(self._unsynced_fds)
                active = self._segments[-1].fd if self._segments else None
                if active is not None and self._data_dirty:
                    to_sync.append(active)
                self._unsynced_fds.clear()
                to_close, self._retired_fds = self._retired_fds, []
                self._data_dirty = False
                dir_dirty, self._dir_dirty = self._dir_dirty, False
                acked = self._acked
                write_checkpoint, self._checkpoint_dirty = self._checkpoint_dirty, False
                drained = [
                    s for s in self._segments if s.fd is None and (s.id, s.end) <= tuple(acked)
                ]
            try:
                for fd in to_sync:
                    os.fsync(fd)
                if dir_dirty:
                    fsync_dir(self.directory)
                if write_checkpoint:
                    self._write_checkpoint(acked)
            except OSError as exc:
                with self._lock:
                    self._data_dirty = self._data_dirty or bool(to_sync)
                    self._checkpoint_dirty = self._checkpoint_dirty or write_checkpoint
                    self._dir_dirty = self._dir_dirty or dir_dirty
                raise JournalError(f"cannot sync the journal in {self.directory}: {exc}") from exc
            finally:
                for fd in to_close:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            for segment in drained:
                with contextlib.suppress(FileNotFoundError):
                    segment.path.unlink()
                with self._lock:
                    self._segments.remove(segment)
                    self._disk_bytes -= segment.size

    def close(self) -> None:
        """Sync, then release the files and the directory lock. Idempotent."""
        if self._closed:
            return
        try:
            self.sync()
        finally:
            with self._sync_lock, self._lock:
                self._closed = True
                for segment in self._segments:
                    if segment.fd is not None:
                        os.close(segment.fd)
                        segment.fd = None
                for fd in self._retired_fds:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                self._retired_fds.clear()
                os.close(self._lock_fd)

    # -- opening and recovery ----------------------------------------------------------------

    def _take_lock(self) -> int:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise JournalError(
                f"cannot open the journal directory {self.directory}: {exc}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalError(
                f"journal {self.directory} is in use by another process; each ingest node "
                "needs its own journal_dir"
            ) from None
        return fd

    def _recover(self) -> JournalPosition:
        checkpoint = self._read_checkpoint()
        ids = sorted(
            int(p.name.removesuffix(_SUFFIX))
            for p in self.directory.glob(f"*{_SUFFIX}")
            if p.name.removesuffix(_SUFFIX).isdigit()
        )
        # Everything that could refuse the open is checked before anything on disk changes.
        live = [i for i in ids if checkpoint is None or i >= checkpoint.segment]
        headers = {i: _read_header(self._path(i)) for i in live}
        self._open_key(headers)
        for seg_id in ids:
            path = self._path(seg_id)
            size = path.stat().st_size
            if checkpoint is not None and seg_id < checkpoint.segment:
                path.unlink()  # drained before the crash, deletion did not happen yet
                continue
            header = headers[seg_id]
            if header is None:
                if size > 0 or seg_id != ids[-1]:
                    self._report(seg_id, 0, size, "unreadable segment header")
                path.unlink()
                continue
            self._segments.append(_Segment(seg_id, path, header, size, size))
        if self._segments:
            self._truncate_torn_tail(self._segments[-1])
        self._disk_bytes = sum(s.size for s in self._segments)
        self._next_id = max([*ids, checkpoint.segment if checkpoint else 0]) + 1
        return self._initial_position(checkpoint)

    def _open_key(self, headers: dict[int, bytes | None]) -> None:
        """Load (or create) the key; refuse if a segment to replay was written under another."""
        key_dir = self.key_file.resolve().parent
        if key_dir.is_relative_to(self.directory.resolve()):
            raise JournalKeyError(
                f"journal key file {self.key_file} is inside the journal directory "
                f"{self.directory}; keep it elsewhere (a copy of the journal must not carry "
                "its key)"
            )
        by_key: dict[bytes, list[int]] = {}
        for seg_id, header in headers.items():
            if header is not None and header.startswith(SEGMENT_MAGIC):
                by_key.setdefault(header[len(SEGMENT_MAGIC) :], []).append(seg_id)
        try:
            self._key = load_journal_key(self.key_file, create=not by_key)
        except JournalKeyError as exc:
            if not by_key or self.key_file.exists():
                raise
            raise JournalKeyError(
                f"{exc}, but {self._describe(by_key)}: restore that key file and start again. "
                "The records are kept (nothing was deleted); to give them up instead, move "
                f"those segment files out of {self.directory}"
            ) from None
        self._header = SEGMENT_MAGIC + self._key.key_id
        foreign = {k: ids for k, ids in by_key.items() if k != self._key.key_id}
        if foreign:
            raise JournalKeyError(
                f"{self._describe(foreign)}, but the journal key file {self.key_file} holds key "
                f"{self._key.key_id.hex()}: the journal key is missing or different. The records "
                "are kept (nothing was deleted); restore the key file that wrote them and start "
                f"again, or, to give them up, move those segment files out of {self.directory}"
            )

    def _describe(self, by_key: dict[bytes, list[int]]) -> str:
        parts = []
        for key_id, ids in by_key.items():
            names = ", ".join(self._path(i).name for i in ids[:3])
            more = f" and {len(ids) - 3} more" if len(ids) > 3 else ""
            parts.append(f"{names}{more} (encrypted with journal key {key_id.hex()})")
        return f"journal segments in {self.directory}: " + "; ".join(parts)

    def _initial_position(self, checkpoint: JournalPosition | None) -> JournalPosition:
        if not self._segments:
            return checkpoint or JournalPosition(0, SEGMENT_HEADER)
        first = self._segments[0]
        if checkpoint is None or checkpoint.segment < first.id:
            return JournalPosition(first.id, len(first.header))
        if checkpoint.offset > first.end:
            # The checkpoint was fsynced, the records it covers were not (kernel crash): Kafka
            # has them, the disk lost them. Nothing to replay in this segment.
            log.warning(
                "journal_checkpoint_past_end",
                segment=first.id,
                checkpoint=checkpoint.offset,
                end=first.end,
            )
            return JournalPosition(first.id, first.end)
        return JournalPosition(first.id, max(checkpoint.offset, len(first.header)))

    def _truncate_torn_tail(self, segment: _Segment) -> None:
        """Find the end of the last complete frame of the newest segment and cut there.

        By length and CRC only: finding the end of what was written needs no key.
        """
        valid = len(segment.header)
        with segment.path.open("rb") as f:
            f.seek(valid)
            while True:
                header = f.read(FRAME_HEADER.size)
                if len(header) < FRAME_HEADER.size:
                    break
                length, crc = FRAME_HEADER.unpack(header)
                if not plausible_length(length):
                    break
                payload = f.read(length)
                if len(payload) < length or frame_crc(length, payload) != crc:
                    break
                valid += FRAME_HEADER.size + length
        if valid < segment.size:
            self._report(segment.id, valid, segment.size - valid, "torn tail truncated")
            with segment.path.open("r+b") as f:
                f.truncate(valid)
                os.fsync(f.fileno())
            segment.size = segment.end = valid

    def _read_checkpoint(self) -> JournalPosition | None:
        path = self.directory / _CHECKPOINT
        try:
            data = json.loads(path.read_text())
            return JournalPosition(int(data["segment"]), int(data["offset"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            # Replaying from the oldest segment duplicates records; guessing could lose them.
            self._report(-1, 0, 0, "unreadable checkpoint; replaying from the oldest segment")
            return None

    # -- internals ---------------------------------------------------------------------------

    def _path(self, seg_id: int) -> Path:
        return self.directory / f"{seg_id:016d}{_SUFFIX}"

    def _drained_locked(self) -> bool:
        if not self._segments:
            return True
        last = self._segments[-1]
        return (last.id, last.end) <= tuple(self._acked)

    def _roll_locked(self) -> _Segment:
        self._retire_active_locked()
        seg_id = self._next_id
        self._next_id += 1
        path = self._path(seg_id)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        except OSError as exc:
            raise JournalError(f"cannot create journal segment {path}: {exc}") from exc
        try:
            _write_all(fd, self._header)
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise JournalError(f"cannot write to {path}: {exc}") from exc
        segment = _Segment(seg_id, path, self._header, SEGMENT_HEADER, SEGMENT_HEADER, fd)
        self._segments.append(segment)
        self._disk_bytes += SEGMENT_HEADER
        self._dir_dirty = True
        return segment

    def _retire_active_locked(self) -> None:
        """Stop appending to the newest segment; its descriptor is fsynced and closed by sync."""
        if self._segments and self._segments[-1].fd is not None:
            active = self._segments[-1]
            assert active.fd is not None
            if self._data_dirty:
                self._unsynced_fds.append(active.fd)
                self._data_dirty = False
            self._retired_fds.append(active.fd)
            active.fd = None

    def _read_from(
        self, start: JournalPosition, max_records: int, max_bytes: int
    ) -> list[JournalEntry]:
        with self._lock:
            if self._closed:
                raise JournalError("journal is closed")
            plan = [(s, s.end) for s in self._segments if (s.id, s.end) > tuple(start)]
        out: list[JournalEntry] = []
        budget = max_bytes
        for segment, end in plan:
            offset = start.offset if segment.id == start.segment else len(segment.header)
            try:
                with segment.path.open("rb", buffering=256 * 1024) as f:
                    offset, budget = self._read_segment(
                        segment, f, offset, end, out, max_records, budget
                    )
            except FileNotFoundError:
                continue  # deleted after being drained
            if offset < end:  # stopped by a limit, not by the end of the segment
                break
        return out

    def _read_segment(
        self,
        segment: _Segment,
        f: IO[bytes],
        offset: int,
        end: int,
        out: list[JournalEntry],
        max_records: int,
        budget: int,
    ) -> tuple[int, int]:
        f.seek(offset)
        while offset < end and len(out) < max_records and budget > 0:
            header = f.read(FRAME_HEADER.size)
            length, crc = (
                FRAME_HEADER.unpack(header) if len(header) == FRAME_HEADER.size else (0, 0)
            )
            payload = f.read(length) if plausible_length(length) else b""
            record = None
            if (
                len(payload) != length
                or frame_crc(length, payload) != crc
                or offset + FRAME_HEADER.size + length > end
            ):
                problem = "checksum mismatch"
            else:
                plain = (
                    self._key.open(payload, segment.aad(offset)) if segment.encrypted else payload
                )
                if plain is None:
                    problem = "authentication failed (tampered, or moved from elsewhere)"
                else:
                    problem = "undecodable record"
                    with contextlib.suppress(ValueError, UnicodeDecodeError):
                        record = decode_payload(plain)
            if record is None:
                self._give_up_on(segment, offset, end, problem)
                return end, budget
            offset += FRAME_HEADER.size + length
            budget -= length
            out.append(JournalEntry(record, JournalPosition(segment.id, offset)))
        return offset, budget

    def _give_up_on(self, segment: _Segment, offset: int, end: int, problem: str) -> None:
        """A frame inside the readable range is corrupt (disk damage, tampering): skip the
        segment's rest."""
        with self._lock:
            if segment.end > offset:
                segment.end = offset
                if segment.fd is not None:
                    self._retire_active_locked()
            else:
                return
        self._report(segment.id, offset, end - offset, f"{problem}; rest of segment skipped")

    def _report(self, segment: int, offset: int, size: int, reason: str) -> None:
        corruption = Corruption(segment, offset, size, reason)
        log.warning(
            "journal_corruption",
            directory=str(self.directory),
            segment=segment,
            offset=offset,
            discarded_bytes=size,
            reason=reason,
        )
        if self._on_corruption is not None:
            self._on_corruption(corruption)

    def _write_checkpoint(self, position: JournalPosition) -> None:
        path = self.directory / _CHECKPOINT
        tmp = path.with_name(_CHECKPOINT + ".tmp")
        data = json.dumps({"segment": position.segment, "offset": position.offset}).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(self.directory)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_header(path: Path) -> bytes | None:
    """The segment's header bytes, None if unreadable (torn or garbage; the caller reports it).

    Raises JournalError for a header of this journal in a format this version does not know, so
    a downgrade never deletes what a newer version wrote.
    """
    with path.open("rb") as f:
        head = f.read(SEGMENT_HEADER)
    magic = head[: len(SEGMENT_MAGIC)]
    if magic == SEGMENT_MAGIC_V1:
        return SEGMENT_MAGIC_V1
    if magic == SEGMENT_MAGIC:
        return head if len(head) == SEGMENT_HEADER else None
    if len(magic) == len(SEGMENT_MAGIC) and magic.startswith(_MAGIC_FAMILY) and magic[6:].isdigit():
        raise JournalError(
            f"journal segment {path} has format {magic.decode()}, which this version does not "
            "know (written by a newer version?); it is left as it is"
        )
    return None
