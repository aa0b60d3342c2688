"""``SealedTranscriptSegment`` -> ``transcripts``: ciphertext only, keyed by segment.

A corrected segment reuses its id and is sealed later, so the newest seal wins (version =
``sealed_at`` in microseconds). The text never appears in clear in the database: reading it needs
the call key, and shredding that key (retention, erasure) leaves only noise here until TTL or
the purge removes the row.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, ClassVar

from sinks.clickhouse.rows import Rows, RowSink

TRANSCRIPT_COLUMNS = (
    "workspace_id", "call_id", "segment_id", "region", "kind", "speaker", "started_at",
    "ended_at", "language", "confidence", "redaction_count", "ciphertext_b64", "expires_at",
    "sealed_at", "version",
)  # fmt: skip


class TranscriptsSink(RowSink):
    TABLES: ClassVar[dict[str, tuple[str, ...]]] = {"transcripts": TRANSCRIPT_COLUMNS}

    def record_id(self, rec: Mapping[str, Any]) -> str:
        return f"{rec['call_id']}/{rec['segment_id']}/{rec['sealed_at'].isoformat()}"

    def rows(self, rec: Mapping[str, Any]) -> Rows:
        return {
            "transcripts": [
                [
                    rec["workspace_id"],
                    rec["call_id"],
                    rec["segment_id"],
                    rec["region"],
                    rec["kind"],
                    rec["speaker"],
                    rec["started_at"],
                    rec["ended_at"],
                    rec["language"],
                    rec["confidence"],
                    rec["redaction_count"],
                    base64.b64encode(rec["ciphertext"]).decode(),
                    rec["expires_at"],
                    rec["sealed_at"],
                    int(rec["sealed_at"].timestamp() * 1_000_000),
                ]
            ]
        }
