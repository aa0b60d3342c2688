"""Where each artifact of a call lives in the region's bucket; the only place keys are built.

Finished artifacts sit under one deterministic prefix per call, so re-processing a call lands on
the same keys and a purge removes a call with one prefix delete::

    recordings/{workspace}/{yyyy}/{mm}/{dd}/{call}/recording.mp3.cvs   segmented AEAD of the MP3
    recordings/{workspace}/{yyyy}/{mm}/{dd}/{call}/transcript.json.cvs segmented AEAD of JSON
    recordings/{workspace}/{yyyy}/{mm}/{dd}/{call}/summary.json.cvs    segmented AEAD of JSON
    recordings/{workspace}/{yyyy}/{mm}/{dd}/{call}/manifest.json       no content: sizes, hashes

The date is the call's start (UTC). Work in progress is staged under a per-call prefix, still
sealed exactly as it was on Kafka::

    staging/{workspace}/{call}/ended.json
    staging/{workspace}/{call}/{audio|transcript}/{partition:03d}-{first offset:020d}

Ids become path segments, so they are checked here: a '/' or '..' in a workspace or call id
would otherwise let one tenant's record address another tenant's prefix.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Final, Literal

from sinks.errors import SinkRejected

RECORDINGS: Final = "recordings/"
STAGING: Final = "staging/"
Stream = Literal["audio", "transcript"]
Artifact = Literal["recording", "transcript", "summary"]
ARTIFACT_FILES: Final[dict[Artifact, str]] = {
    "recording": "recording.mp3.cvs",
    "transcript": "transcript.json.cvs",
    "summary": "summary.json.cvs",
}
MANIFEST: Final = "manifest.json"
_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._:@+-]{0,127}")


def checked_id(value: str, what: str) -> str:
    if not _ID.fullmatch(value) or ".." in value:
        raise SinkRejected(f"{what} {value[:80]!r} cannot be used in an object key")
    return value


def workspace_prefix(workspace_id: str) -> str:
    return f"{RECORDINGS}{checked_id(workspace_id, 'workspace id')}/"


def call_prefix(workspace_id: str, call_id: str, started: datetime | date) -> str:
    day = started.date() if isinstance(started, datetime) else started
    return f"{workspace_prefix(workspace_id)}{day:%Y/%m/%d}/{checked_id(call_id, 'call id')}/"


def artifact_key(workspace_id: str, call_id: str, started: datetime, artifact: Artifact) -> str:
    return call_prefix(workspace_id, call_id, started) + ARTIFACT_FILES[artifact]


def manifest_key(workspace_id: str, call_id: str, started: datetime) -> str:
    return call_prefix(workspace_id, call_id, started) + MANIFEST


def staging_workspace_prefix(workspace_id: str) -> str:
    return f"{STAGING}{checked_id(workspace_id, 'workspace id')}/"


def staging_prefix(workspace_id: str, call_id: str) -> str:
    return f"{staging_workspace_prefix(workspace_id)}{checked_id(call_id, 'call id')}/"


def staged_key(workspace_id: str, call_id: str, stream: Stream, partition: int, offset: int) -> str:
    return f"{staging_prefix(workspace_id, call_id)}{stream}/{partition:03d}-{offset:020d}"


def ended_key(workspace_id: str, call_id: str) -> str:
    return staging_prefix(workspace_id, call_id) + "ended.json"


def parse_staging_prefix(prefix: str) -> tuple[str, str] | None:
    """``staging/{ws}/{call}/`` -> (ws, call); None for anything else."""
    parts = prefix.split("/")
    if len(parts) != 4 or parts[0] + "/" != STAGING or parts[3]:
        return None
    return parts[1], parts[2]
