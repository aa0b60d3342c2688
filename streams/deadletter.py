"""Dead-letter records: the bad input, byte for byte, with where it came from and why it failed.

A dead letter is how "never crash, never silently drop" is kept: the stream moves on, and an
operator can inspect, fix and replay the record.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas.codec import get_codec


def dead_letter(
    *,
    source_topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    reason: str,
    error: BaseException,
    stage: str,
) -> bytes:
    record: dict[str, Any] = {
        "source_topic": source_topic,
        "partition": partition,
        "offset": offset,
        "key": key,
        "value": value or b"",
        "reason": f"{reason}: {error}"[:2000],
        "error_type": type(error).__name__,
        "failed_at": datetime.now(UTC),
        "stage": stage,
    }
    return get_codec().encode("DeadLetter", record)
