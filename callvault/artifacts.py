"""Reading a finished call's stored artifacts back: where its manifest is, and the context each
artifact was sealed under.

Shared by the governed downloads (``callvault recordings get``) and the subject-access export
(:mod:`callvault.dsar`), so the two can never disagree on how a call is found or opened.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime
from typing import Any

from callvault.crypto.envelope import Aad
from callvault.crypto.segmented import decrypt_stream
from callvault.errors import ControlError
from sinks.objects import layout
from sinks.objects.store import ObjectStore


async def locate_manifest(
    store: ObjectStore, workspace_id: str, call_id: str, started: datetime | None = None
) -> dict[str, Any] | None:
    """The call's manifest, or None when nothing of the call is stored.

    The key holds the call's start date: ``started`` (when the caller knows it, e.g. from the
    analytics row) is tried first, then every day newest first, because a row's start and the
    archived start may differ by a day around midnight or after a late correction."""
    if started is not None:
        key = layout.manifest_key(workspace_id, call_id, started)
        if await store.head(key) is not None:
            return _parse(await store.get(key))
    prefix = layout.workspace_prefix(workspace_id)
    days = [
        day
        for year in await store.prefixes(prefix)
        for month in await store.prefixes(year)
        for day in await store.prefixes(month)
    ]
    for day in sorted(days, reverse=True):
        key = f"{day}{layout.checked_id(call_id, 'call id')}/{layout.MANIFEST}"
        if await store.head(key) is not None:
            return _parse(await store.get(key))
    return None


async def manifests(
    store: ObjectStore, workspace_id: str, since: date, until: date
) -> AsyncIterator[dict[str, Any]]:
    """The manifests of the workspace's calls that started on days ``since``..``until``
    (inclusive), newest day first; the day is read from the key, so no other day is listed."""
    prefix = layout.workspace_prefix(workspace_id)
    days: list[tuple[date, str]] = []
    for year in await store.prefixes(prefix):
        for month in await store.prefixes(year):
            for day in await store.prefixes(month):
                try:
                    when = datetime.strptime(day[len(prefix) : -1], "%Y/%m/%d").date()
                except ValueError:
                    continue
                if since <= when <= until:
                    days.append((when, day))
    for _, day in sorted(days, reverse=True):
        for call in sorted(await store.prefixes(day)):
            key = f"{call}{layout.MANIFEST}"
            if await store.head(key) is not None:
                yield _parse(await store.get(key))


async def find_manifest(store: ObjectStore, workspace_id: str, call_id: str) -> dict[str, Any]:
    """:func:`locate_manifest` for a reader that cannot go on without one."""
    manifest = await locate_manifest(store, workspace_id, call_id)
    if manifest is None:
        raise ControlError(
            f"no stored artifacts for call {call_id} in workspace {workspace_id} (not finished "
            "yet, expired or erased)"
        )
    return manifest


def artifact_aad(
    workspace_id: str, call_id: str, artifact: layout.Artifact, manifest: dict[str, Any]
) -> Aad:
    """The context the archiver sealed ``artifact`` under. Workspace and call come from the
    reader's own request, never from the manifest, so a manifest copied to another call cannot
    redirect a reader; transcript and summary are documents, a kind of their own."""
    kind = "recording" if artifact == "recording" else f"{artifact}-document"
    return Aad(workspace_id, call_id, kind, manifest["region"])


def decrypt_artifact(
    store: ObjectStore, entry: dict[str, Any], key: bytes, aad: Aad
) -> Iterator[bytes]:
    """Blocking: the artifact's plaintext, segment by segment (provisional until exhausted)."""
    return decrypt_stream(key, store.open_stream(entry["key"]), aad)


def _parse(raw: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(raw)
    return doc
