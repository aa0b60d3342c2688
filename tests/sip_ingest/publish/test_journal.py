"""The disk journal on its own: order, resume after restart, torn tails, the size bound."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from sip_ingest.publish import Corruption, Journal, JournalError, JournalFull, Record
from sip_ingest.publish.journal import SEGMENT_HEADER


def rec(i: int, size: int = 100) -> Record:
    return Record(
        f"topic-{i % 3}",
        f"call-{i % 7}".encode(),
        i.to_bytes(4, "big") + bytes(size),
        (("seq", str(i).encode()),) if i % 2 else (),
    )


def open_journal(tmp: Path, max_bytes: int, **options: Any) -> Journal:
    """The journal in ``tmp/journal``, its key in ``tmp/keys`` (outside it, as deployed)."""
    return Journal(tmp / "journal", max_bytes, key_file=tmp / "keys" / "journal.key", **options)


def segments(tmp: Path) -> list[Path]:
    return sorted((tmp / "journal").glob("*.seg"))


def test_replay_returns_every_record_in_append_order_across_segments(tmp_path: Path) -> None:
    journal = open_journal(tmp_path, 10 * 1024 * 1024, segment_bytes=64 * 1024)
    records = [rec(i, size=1000) for i in range(500)]
    for r in records:
        journal.append(r)
    assert len(segments(tmp_path)) > 3
    assert [e.record for e in journal.replay()] == records
    assert not journal.is_drained()
    journal.close()


def test_acknowledged_prefix_survives_restart_and_drained_segments_are_deleted(
    tmp_path: Path,
) -> None:
    journal = open_journal(tmp_path, 10 * 1024 * 1024, segment_bytes=64 * 1024)
    records = [rec(i, size=1000) for i in range(300)]
    for r in records:
        journal.append(r)
    before = len(segments(tmp_path))
    entries = journal.read(max_records=200)
    journal.ack(entries[-1].position)
    journal.sync()
    assert len(segments(tmp_path)) < before  # fully drained segments are gone
    journal.close()

    reopened = open_journal(tmp_path, 10 * 1024 * 1024, segment_bytes=64 * 1024)
    assert [e.record for e in reopened.replay()] == records[200:]
    reopened.append(rec(1000))
    assert [e.record for e in reopened.replay()][-1] == rec(1000)
    last = list(reopened.replay())[-1]
    reopened.ack(last.position)
    assert reopened.is_drained()
    reopened.sync()
    assert segments(tmp_path) == []
    assert reopened.bytes_on_disk == 0
    reopened.close()


@pytest.mark.parametrize("damage", ["truncate", "zero_fill"])
def test_torn_tail_is_truncated_reported_and_not_fatal(tmp_path: Path, damage: str) -> None:
    journal = open_journal(tmp_path, 10 * 1024 * 1024)
    records = [rec(i) for i in range(10)]
    for r in records:
        journal.append(r)
    journal.close()
    (last,) = segments(tmp_path)
    size = last.stat().st_size
    if damage == "truncate":  # the last record's write was cut short
        os.truncate(last, size - 5)
    else:  # a power cut after the size was committed but before the data: zeros
        with last.open("r+b") as f:
            f.seek(size - 40)
            f.write(bytes(40))

    seen: list[Corruption] = []
    reopened = open_journal(tmp_path, 10 * 1024 * 1024, on_corruption=seen.append)
    assert [e.record for e in reopened.replay()] == records[:9]
    assert len(seen) == 1 and seen[0].reason == "torn tail truncated"
    assert seen[0].discarded_bytes > 0
    # The journal carries on: new records follow the surviving ones.
    reopened.append(rec(99))
    assert [e.record for e in reopened.replay()] == [*records[:9], rec(99)]
    reopened.close()
    # And the truncation itself is durable: no second report on the next open.
    again: list[Corruption] = []
    open_journal(tmp_path, 10 * 1024 * 1024, on_corruption=again.append).close()
    assert again == []


def test_corrupt_frame_inside_an_older_segment_skips_only_that_segment(tmp_path: Path) -> None:
    journal = open_journal(tmp_path, 10 * 1024 * 1024, segment_bytes=64 * 1024)
    records = [rec(i, size=1000) for i in range(200)]
    for r in records:
        journal.append(r)
    second = list(journal.replay())[1].position  # where the third record starts
    journal.close()
    first = segments(tmp_path)[0]
    assert first.name.startswith(f"{second.segment:016d}")
    with first.open("r+b") as f:  # flip a byte in the third record's payload
        f.seek(second.offset + 100)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    seen: list[Corruption] = []
    reopened = open_journal(
        tmp_path, 10 * 1024 * 1024, segment_bytes=64 * 1024, on_corruption=seen.append
    )
    replayed = [e.record for e in reopened.replay()]
    assert replayed[:2] == records[:2]
    assert seen and seen[0].reason.startswith("checksum mismatch")
    # Everything from the next segment on is still there, in order.
    in_first = sum(1 for r in records if r not in replayed)
    assert replayed[2:] == records[2 + in_first :]
    reopened.ack(list(reopened.replay())[-1].position)
    assert reopened.is_drained()
    reopened.close()


def test_full_journal_refuses_with_a_distinct_error_and_keeps_what_it_has(tmp_path: Path) -> None:
    journal = open_journal(tmp_path, 256 * 1024, segment_bytes=64 * 1024)
    accepted = []
    with pytest.raises(JournalFull):
        for i in range(10_000):
            journal.append(rec(i, size=1000))
            accepted.append(rec(i, size=1000))
    assert journal.bytes_on_disk <= 256 * 1024
    assert [e.record for e in journal.replay()] == accepted
    assert issubclass(JournalFull, JournalError) and JournalFull.retriable
    # Draining gives the space back.
    entries = journal.read(max_records=len(accepted) // 2)
    journal.ack(entries[-1].position)
    journal.sync()
    journal.append(rec(5000, size=1000))
    journal.close()


def test_a_second_process_cannot_open_the_same_journal(tmp_path: Path) -> None:
    journal = open_journal(tmp_path, 1024 * 1024)
    with pytest.raises(JournalError, match="in use"):
        open_journal(tmp_path, 1024 * 1024)
    journal.close()
    open_journal(tmp_path, 1024 * 1024).close()


def test_unreadable_checkpoint_replays_from_the_oldest_record(tmp_path: Path) -> None:
    journal = open_journal(tmp_path, 1024 * 1024)
    records = [rec(i) for i in range(5)]
    for r in records:
        journal.append(r)
    journal.ack(journal.read(max_records=3)[-1].position)
    journal.close()
    checkpoint = tmp_path / "journal" / "checkpoint.json"
    assert json.loads(checkpoint.read_text())["offset"] > SEGMENT_HEADER
    checkpoint.write_text("{not json")
    seen: list[Corruption] = []
    reopened = open_journal(tmp_path, 1024 * 1024, on_corruption=seen.append)
    # Duplicates rather than loss: the three acknowledged records come back too.
    assert [e.record for e in reopened.replay()] == records
    assert seen and "checkpoint" in seen[0].reason
    reopened.close()


def test_files_are_private(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    journal = open_journal(tmp_path, 1024 * 1024)
    journal.append(rec(1))
    journal.ack(journal.read()[-1].position)
    journal.sync()
    journal.append(rec(2))
    assert directory.stat().st_mode & 0o777 == 0o700
    for path in segments(tmp_path):
        assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "keys" / "journal.key").stat().st_mode & 0o777 == 0o600
    journal.close()
