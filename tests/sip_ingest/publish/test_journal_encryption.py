"""The journal encrypted at rest: nothing readable on disk, the key file's rules, a missing or
different key that keeps the records, tampering caught as corruption, old plaintext segments."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from callvault.settings import Settings
from sip_ingest.publish import Corruption, Journal, Record
from sip_ingest.publish.errors import JournalError, JournalKeyError
from sip_ingest.publish.framing import FRAME_HEADER, encode_frame, frame_crc
from sip_ingest.publish.journal import (
    SEGMENT_HEADER,
    SEGMENT_MAGIC,
    SEGMENT_MAGIC_V1,
)
from sip_ingest.publish.journal_key import KEY_SIZE, JournalKey
from tests.sip_ingest.publish.test_journal import open_journal, rec, segments

MARKER = b"PLAINTEXT-MARKER-" + bytes(range(47))  # 64 bytes no cipher output would repeat
PHONE = b"+14155550123"


def key_file(tmp: Path) -> Path:
    return tmp / "keys" / "journal.key"


def snapshot(tmp: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in segments(tmp)}


def frames(path: Path, header: int = SEGMENT_HEADER) -> list[tuple[int, int]]:
    """``(offset, stored length)`` of every frame in a segment file."""
    data = path.read_bytes()
    out, offset = [], header
    while offset < len(data):
        length, _ = FRAME_HEADER.unpack_from(data, offset)
        out.append((offset, length))
        offset += FRAME_HEADER.size + length
    return out


def rewrite_frame(path: Path, offset: int, stored: bytes) -> None:
    """Put ``stored`` at the frame at ``offset`` with a matching CRC, so only GCM can object."""
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(FRAME_HEADER.pack(len(stored), frame_crc(len(stored), stored)) + stored)


def test_records_round_trip_and_nothing_is_in_clear_on_disk(tmp_path: Path) -> None:
    journal = open_journal(tmp_path, 10 * 1024 * 1024, segment_bytes=64 * 1024)
    records = [
        Record(
            "ingest.audio",
            PHONE + f"/{i}".encode(),
            MARKER + i.to_bytes(4, "big") + bytes(8000),  # a one-second G.711 chunk
            (("caller", PHONE), ("seq", str(i).encode())),
        )
        for i in range(40)
    ]
    for r in records:
        journal.append(r)
    journal.sync()
    assert [e.record for e in journal.replay()] == records
    key_id = hashlib.sha256(b"callvault-journal-key-id" + key_file(tmp_path).read_bytes())
    assert journal.key_id == key_id.hexdigest()[:16]
    journal.close()

    files = segments(tmp_path)
    assert len(files) > 2
    for path in files:
        data = path.read_bytes()
        assert data[:SEGMENT_HEADER] == SEGMENT_MAGIC + key_id.digest()[:8]
        assert MARKER not in data
        assert PHONE not in data
        assert b"ingest.audio" not in data
    # A fresh process with the same key file reads everything back.
    reopened = open_journal(tmp_path, 10 * 1024 * 1024, segment_bytes=64 * 1024)
    assert [e.record for e in reopened.replay()] == records
    reopened.close()


def test_key_file_is_created_private_and_refused_when_others_can_read_it(tmp_path: Path) -> None:
    open_journal(tmp_path, 1024 * 1024).close()
    path = key_file(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(path.read_bytes()) == KEY_SIZE
    named = re.escape(str(path))
    for mode in (0o644, 0o640, 0o604):
        path.chmod(mode)
        with pytest.raises(JournalKeyError, match=f"{named}.*chmod 600 {named}"):
            open_journal(tmp_path, 1024 * 1024)
    path.chmod(0o400)  # owner-only, read-only is fine
    open_journal(tmp_path, 1024 * 1024).close()


def test_malformed_or_misplaced_key_files_are_refused(tmp_path: Path) -> None:
    path = key_file(tmp_path)
    path.parent.mkdir(mode=0o700)
    path.write_bytes(os.urandom(KEY_SIZE) + b"\n")
    path.chmod(0o600)
    with pytest.raises(JournalKeyError, match="exactly 32 bytes"):
        open_journal(tmp_path, 1024 * 1024)
    with pytest.raises(JournalKeyError, match="inside the journal directory"):
        Journal(tmp_path / "journal", 1024 * 1024, key_file=tmp_path / "journal" / "k" / "key")


def test_default_key_file_lives_under_home_keys_outside_the_journal(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    assert settings.ingest_journal_key_file == tmp_path / "home" / "keys" / "ingest-journal.key"
    assert not settings.ingest_journal_key_file.is_relative_to(settings.ingest_journal_dir)
    custom = Settings(home=tmp_path, ingest={"journal_key_file": tmp_path / "k"})
    assert custom.ingest_journal_key_file == tmp_path / "k"


def test_key_holder_repr_never_shows_the_key() -> None:
    raw = os.urandom(KEY_SIZE)
    key = JournalKey(raw, path=Path("/keys/journal.key"))
    text = repr(key)
    assert raw.hex() not in text and repr(raw) not in text and str(raw) not in text
    assert key.key_id.hex() in text
    assert not hasattr(key, "__dict__")  # no attribute holds the raw key


def test_a_different_or_missing_key_keeps_the_segments_until_the_right_key_is_back(
    tmp_path: Path,
) -> None:
    journal = open_journal(tmp_path, 10 * 1024 * 1024, segment_bytes=64 * 1024)
    records = [rec(i, size=1000) for i in range(150)]
    for r in records:
        journal.append(r)
    journal.ack(journal.read(max_records=10)[-1].position)  # a checkpoint exists too
    journal.close()
    before = snapshot(tmp_path)
    assert len(before) > 1
    path = key_file(tmp_path)
    right = path.read_bytes()
    first = segments(tmp_path)[0].name

    # Another key in the file (e.g. lost and recreated, or the wrong backup restored).
    path.write_bytes(os.urandom(KEY_SIZE))
    seen: list[Corruption] = []
    with pytest.raises(JournalKeyError, match="missing or different") as refused:
        open_journal(tmp_path, 10 * 1024 * 1024, on_corruption=seen.append)
    assert first in str(refused.value) and str(path) in str(refused.value)
    assert seen == []  # not corruption
    assert snapshot(tmp_path) == before

    # No key file at all: refused too, and no new key is made (it could never read them).
    path.unlink()
    with pytest.raises(JournalKeyError, match=r"does not exist.*restore"):
        open_journal(tmp_path, 10 * 1024 * 1024)
    assert not path.exists()
    assert snapshot(tmp_path) == before

    # The right key back: every unacknowledged record is there.
    path.write_bytes(right)
    path.chmod(0o600)
    reopened = open_journal(tmp_path, 10 * 1024 * 1024, on_corruption=seen.append)
    assert [e.record for e in reopened.replay()] == records[10:]
    assert seen == []
    reopened.close()


def test_a_tampered_frame_with_a_valid_crc_is_corruption_and_the_journal_carries_on(
    tmp_path: Path,
) -> None:
    journal = open_journal(tmp_path, 10 * 1024 * 1024, segment_bytes=64 * 1024)
    records = [rec(i, size=1000) for i in range(200)]
    for r in records:
        journal.append(r)
    journal.close()
    first = segments(tmp_path)[0]
    offset, length = frames(first)[2]
    stored = bytearray(first.read_bytes()[offset + FRAME_HEADER.size :][:length])
    stored[length // 2] ^= 0x01  # a ciphertext byte; the CRC is recomputed to match
    rewrite_frame(first, offset, bytes(stored))

    seen: list[Corruption] = []
    reopened = open_journal(
        tmp_path, 10 * 1024 * 1024, segment_bytes=64 * 1024, on_corruption=seen.append
    )
    assert seen == []  # the CRC scan at open finds nothing wrong
    replayed = [e.record for e in reopened.replay()]
    assert len(seen) == 1
    assert seen[0].reason.startswith("authentication failed")
    assert (seen[0].segment, seen[0].offset) == (int(first.stem), offset)
    in_first = len(frames(first))
    assert replayed == records[:2] + records[in_first:]  # later segments still come
    reopened.ack(list(reopened.replay())[-1].position)
    assert reopened.is_drained()
    reopened.append(rec(999))  # and new records still go in
    assert [e.record for e in reopened.replay()] == [rec(999)]
    reopened.close()


def test_a_frame_moved_to_another_place_does_not_authenticate(tmp_path: Path) -> None:
    journal = open_journal(tmp_path, 10 * 1024 * 1024)
    records = [rec(i, size=1000) for i in (0, 2, 4, 6)]  # same size: frames are swappable
    for r in records:
        journal.append(r)
    journal.close()
    (segment,) = segments(tmp_path)
    data = segment.read_bytes()
    (a, la), (b, lb) = frames(segment)[1:3]
    assert la == lb
    whole = FRAME_HEADER.size + la
    swapped = data[:a] + data[b : b + whole] + data[a : a + whole] + data[b + whole :]
    segment.write_bytes(swapped)  # CRCs still match: they do not cover the place

    seen: list[Corruption] = []
    reopened = open_journal(tmp_path, 10 * 1024 * 1024, on_corruption=seen.append)
    assert [e.record for e in reopened.replay()] == records[:1]
    assert len(seen) == 1 and seen[0].reason.startswith("authentication failed")
    reopened.close()


def test_plaintext_v1_segments_are_still_drained_and_never_written_again(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    directory.mkdir(mode=0o700)
    old = [rec(i) for i in range(30)]
    # Written exactly as the previous version did: v1 magic, then frames with plain payloads.
    v1 = directory / f"{1:016d}.seg"
    v1.write_bytes(SEGMENT_MAGIC_V1 + b"".join(encode_frame(r) for r in old))
    v1.chmod(0o600)

    journal = open_journal(tmp_path, 1024 * 1024)
    assert [e.record for e in journal.replay()] == old
    journal.append(rec(100))  # goes to a new, encrypted segment
    journal.close()
    v1_bytes = v1.read_bytes()
    assert v1_bytes.startswith(SEGMENT_MAGIC_V1)
    newer = segments(tmp_path)[1]
    assert newer.read_bytes().startswith(SEGMENT_MAGIC)

    reopened = open_journal(tmp_path, 1024 * 1024)
    entries = list(reopened.replay())
    assert [e.record for e in entries] == [*old, rec(100)]
    reopened.ack(entries[-1].position)
    reopened.sync()
    assert segments(tmp_path) == []
    reopened.close()


def test_a_torn_v1_tail_is_still_cut_like_before(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    directory.mkdir(mode=0o700)
    old = [rec(i) for i in range(5)]
    data = SEGMENT_MAGIC_V1 + b"".join(encode_frame(r) for r in old)
    (directory / f"{1:016d}.seg").write_bytes(data[:-7])
    seen: list[Corruption] = []
    journal = open_journal(tmp_path, 1024 * 1024, on_corruption=seen.append)
    assert [e.record for e in journal.replay()] == old[:4]
    assert [c.reason for c in seen] == ["torn tail truncated"]
    journal.close()


def test_a_segment_of_an_unknown_newer_format_is_left_alone(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    directory.mkdir(mode=0o700)
    future = directory / f"{1:016d}.seg"
    future.write_bytes(b"CVJRNL07" + os.urandom(200))
    content = future.read_bytes()
    with pytest.raises(JournalError, match="CVJRNL07"):
        open_journal(tmp_path, 1024 * 1024)
    assert future.read_bytes() == content
