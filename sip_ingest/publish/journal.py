"""A bounded, append-only disk journal for records Kafka could not take yet.

Layout: numbered segment files (``<id>.seg``, each opening with an 8-byte magic) holding
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

Threads. ``append`` and ``ack`` run on the event loop; ``read``, ``sync`` and ``close`` may run in
worker threads. One lock guards the segment table; file I/O of ``read`` and ``sync`` happens
outside it, so an append never waits for an fsync.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NamedTuple

import structlog

from sip_ingest.publish.errors import JournalError, JournalFull
from sip_ingest.publish.framing import (
    FRAME_HEADER,
    Record,
    decode_payload,
    encode_frame,
    frame_crc,
    plausible_length,
)

log = structlog.get_logger(__name__)

SEGMENT_MAGIC = b"CVJRNL01"
SEGMENT_HEADER = len(SEGMENT_MAGIC)
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
    #: Bytes on disk.
    size: int
    #: Readable end: frames at or past it are not returned (a torn or corrupt tail).
    end: int
    #: Write descriptor while this is the segment appends go to.
    fd: int | None = None


class Journal:
    """Crash-safe FIFO of records on disk; see the module docstring for the guarantees."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        *,
        segment_bytes: int | None = None,
        on_corruption: Callable[[Corruption], None] | None = None,
    ) -> None:
        self.directory = Path(directory)
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

    def is_drained(self) -> bool:
        """True when every appended record has been acknowledged."""
        with self._lock:
            return self._drained_locked()

    def append(self, record: Record) -> None:
        """Write one record after all earlier ones; raises JournalFull or JournalError.

        Never fsyncs (see the module docstring); on a failed write the segment is cut back to
        its previous length so no half frame stays behind.
        """
        frame = encode_frame(record)
        with self._lock:
            if self._closed:
                raise JournalError("journal is closed")
            active = self._segments[-1] if self._segments else None
            roll = (
                active is None
                or active.fd is None
                or (active.size > SEGMENT_HEADER and active.size + len(frame) > self.segment_bytes)
            )
            needed = len(frame) + (SEGMENT_HEADER if roll else 0)
            if self._disk_bytes + needed > self.max_bytes:
                raise JournalFull(
                    f"journal holds {self._disk_bytes} of {self.max_bytes} bytes; "
                    f"a {len(frame)}-byte record does not fit"
                )
            if roll:
                active = self._roll_locked()
            assert active is not None and active.fd is not None
            try:
                _write_all(active.fd, frame)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.ftruncate(active.fd, active.size)
                raise JournalError(f"cannot write to {active.path}: {exc}") from exc
            active.size += len(frame)
            active.end = active.size
            self._disk_bytes += len(frame)
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
                    _fsync_dir(self.directory)
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
        for seg_id in ids:
            path = self._path(seg_id)
            size = path.stat().st_size
            if checkpoint is not None and seg_id < checkpoint.segment:
                path.unlink()  # drained before the crash, deletion did not happen yet
                continue
            if size < SEGMENT_HEADER or _read_magic(path) != SEGMENT_MAGIC:
                if size > 0 or seg_id != ids[-1]:
                    self._report(seg_id, 0, size, "unreadable segment header")
                path.unlink()
                continue
            self._segments.append(_Segment(seg_id, path, size, size))
        if self._segments:
            self._truncate_torn_tail(self._segments[-1])
        self._disk_bytes = sum(s.size for s in self._segments)
        self._next_id = max([*ids, checkpoint.segment if checkpoint else 0]) + 1
        return self._initial_position(checkpoint)

    def _initial_position(self, checkpoint: JournalPosition | None) -> JournalPosition:
        if not self._segments:
            return checkpoint or JournalPosition(0, SEGMENT_HEADER)
        first = self._segments[0]
        if checkpoint is None or checkpoint.segment < first.id:
            return JournalPosition(first.id, SEGMENT_HEADER)
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
        return JournalPosition(first.id, max(checkpoint.offset, SEGMENT_HEADER))

    def _truncate_torn_tail(self, segment: _Segment) -> None:
        """Find the end of the last complete frame of the newest segment and cut there."""
        valid = SEGMENT_HEADER
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
            _write_all(fd, SEGMENT_MAGIC)
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise JournalError(f"cannot write to {path}: {exc}") from exc
        segment = _Segment(seg_id, path, SEGMENT_HEADER, SEGMENT_HEADER, fd)
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
            offset = start.offset if segment.id == start.segment else SEGMENT_HEADER
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
            if len(payload) == length and frame_crc(length, payload) == crc:
                with contextlib.suppress(ValueError, UnicodeDecodeError):
                    record = decode_payload(payload)
            if record is None or offset + FRAME_HEADER.size + length > end:
                self._give_up_on(segment, offset, end)
                return end, budget
            offset += FRAME_HEADER.size + length
            budget -= length
            out.append(JournalEntry(record, JournalPosition(segment.id, offset)))
        return offset, budget

    def _give_up_on(self, segment: _Segment, offset: int, end: int) -> None:
        """A frame inside the readable range is corrupt (disk damage): skip the segment's rest."""
        with self._lock:
            if segment.end > offset:
                segment.end = offset
                if segment.fd is not None:
                    self._retire_active_locked()
            else:
                return
        self._report(segment.id, offset, end - offset, "checksum mismatch; rest of segment skipped")

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
        _fsync_dir(self.directory)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_magic(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(SEGMENT_HEADER)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
