"""Finish a call: staged sealed records -> encrypted recording, transcript and summary documents
and a manifest under the call's deterministic prefix (see :mod:`sinks.objects.layout`).

When a call is finished:
- its ENDED event was staged and every audio chunk the ingest node published for it
  (``audio_chunks``) is staged — or ``settle_timeout_s`` passed since the ENDED event, and it is
  finished with what arrived (the gap is silence and the manifest counts the missing chunks);
- without ``audio_chunks`` (older ingest), ``settle_s`` after the ENDED event;
- a call whose ENDED never comes (its ingest node died) is finished as an orphan once nothing was
  staged for it for ``orphan_after_s``.

Once. The recording is completed under ``If-None-Match: *``, so a second finisher (a retry after a
crash, another worker after a rebalance) finds the object there and reuses it: the object is
written once. Documents and the manifest may be rewritten: a summary generated after the call
ended is staged like any segment and merged into the documents by a later pass ("amend"); audio
staged for a call that already has its recording is a replay's duplicate and is discarded.

Memory. The recording is built by streaming staged objects one at a time through the decoder,
the MP3 encoder and the segmented encryptor into a 0600 temp file (ciphertext only: plaintext
audio never touches disk), then uploaded in parts; an hour-long call never sits in RAM.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import structlog

from callvault.crypto.envelope import Aad, peek_key_id, unseal
from callvault.crypto.errors import KeyDestroyed
from callvault.crypto.segmented import DEFAULT_SEGMENT_SIZE, Encryptor, decrypt_stream
from callvault.files import PRIVATE_MODE
from schemas.codec import get_codec
from sinks.objects import layout
from sinks.objects.layout import Artifact
from sinks.objects.store import ObjectExists, ObjectInfo, ObjectStore
from sinks.recordings.recording import LEGS, RecordingBuilder
from sinks.recordings.staging import EndedCall, Staging, unframe

log = structlog.get_logger(__name__)

FORMAT = "cvs1"
_FETCH_AHEAD = 8  # callvault.crypto.segmented, version 1
Status = Literal["finished", "amended", "waiting", "in_progress", "erased", "empty"]


class CallKeys(Protocol):
    async def key_for(self, key_id: str, *, workspace_id: str, call_id: str) -> bytes: ...

    async def call_key(
        self, workspace_id: str, call_id: str, call_started_at: datetime | None
    ) -> tuple[str, bytes]: ...


@dataclass
class Outcome:
    status: Status
    manifest: dict[str, Any] | None = None
    late_audio_objects: int = 0


@dataclass
class _Scan:
    """What pass one learned from a staged audio object without decrypting it."""

    chunks: list[tuple[str, int]]
    key_ids: set[str]
    first_captured_at: datetime | None
    expires_at: datetime | None


@dataclass
class _CallScan:
    objects: dict[str, _Scan] = field(default_factory=dict)

    def seqs(self) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {leg: set() for leg in LEGS}
        for scan in self.objects.values():
            for leg, seq in scan.chunks:
                out.setdefault(leg, set()).add(seq)
        return out


class Archiver:
    def __init__(
        self,
        store: ObjectStore,
        keys: CallKeys,
        *,
        tmp_dir: Path,
        part_size: int = 8 * 1024 * 1024,
        settle_s: float = 5.0,
        settle_timeout_s: float = 120.0,
        orphan_after_s: float = 3600.0,
    ) -> None:
        self.store = store
        self.staging = Staging(store)
        self.keys = keys
        self.tmp_dir = tmp_dir
        self.part_size = part_size
        self.settle = timedelta(seconds=settle_s)
        self.settle_timeout = timedelta(seconds=settle_timeout_s)
        self.orphan_after = timedelta(seconds=orphan_after_s)
        self._codec = get_codec()
        self._scans: dict[tuple[str, str], _CallScan] = {}

    async def finish(self, workspace_id: str, call_id: str, *, now: datetime) -> Outcome:
        ws, call = workspace_id, call_id
        audio = await self.staging.objects(ws, call, "audio")
        transcript = await self.staging.objects(ws, call, "transcript")
        try:
            return await self._finish(ws, call, audio, transcript, now)
        except KeyDestroyed:
            # the call was erased or expired while staged: nothing of it may be written
            await self.store.delete([o.key for o in audio + transcript])
            await self.store.delete([layout.ended_key(ws, call)])
            self._scans.pop((ws, call), None)
            return Outcome("erased")

    async def _finish(
        self, ws: str, call: str, audio: list[ObjectInfo], transcript: list[ObjectInfo],
        now: datetime,
    ) -> Outcome:  # fmt: skip
        ended = await self.staging.ended(ws, call)
        existing: dict[str, Any] | None = None
        if ended is None:
            # finished before (a late segment or a replay), in progress, or orphaned: only the
            # first staged object is read to tell, never a live call's whole audio
            existing = await self._find_manifest(ws, call, audio, transcript)
            if existing is None:
                if not audio and not transcript:
                    return Outcome("empty")
                newest = max(o.last_modified for o in audio + transcript)
                if now - newest < self.orphan_after:
                    return Outcome("in_progress")
                scan = await self._scan(ws, call, audio)
                ended = self._orphan(ws, call, scan, transcript, now)
                log.warning("recording_orphan", workspace_id=ws, call_id=call)
            else:
                ended = _ended_from_manifest(existing)
        else:
            existing = await self._manifest(ended)
        scan = await self._scan(ws, call, audio)
        if existing is None and not self._complete(ended, scan, now):
            return Outcome("waiting")
        if existing is None and not audio and not transcript:
            # metadata only (unanswered, or no audio was ever sent): there is nothing to store
            await self.store.delete([layout.ended_key(ws, call)])
            self._scans.pop((ws, call), None)
            return Outcome("empty")
        manifest, late = await self._write(ended, audio, transcript, scan, existing, now)
        await self.store.delete([o.key for o in audio + transcript] + [layout.ended_key(ws, call)])
        self._scans.pop((ws, call), None)
        return Outcome("amended" if existing else "finished", manifest, late)

    # -- deciding

    async def _scan(self, ws: str, call: str, audio: list[ObjectInfo]) -> _CallScan:
        """Pass one over new staged audio objects: which chunks are there (cached per call, so
        a call waiting for its last chunks downloads each object once)."""
        cached = self._scans.setdefault((ws, call), _CallScan())
        new = [obj.key for obj in audio if obj.key not in cached.objects]
        for i in range(0, len(new), _FETCH_AHEAD):  # small objects: fetched side by side
            batch = new[i : i + _FETCH_AHEAD]
            bodies = await asyncio.gather(*(self.staging.records(key) for key in batch))
            for key, records in zip(batch, bodies, strict=True):
                chunks, key_ids, first, expires = [], set(), None, None
                for raw in records:
                    rec = self._codec.decode("SealedAudioChunk", raw)
                    chunks.append((rec["leg"], rec["seq"]))
                    key_ids.add(peek_key_id(rec["ciphertext"]))
                    first = min(first, rec["captured_at"]) if first else rec["captured_at"]
                    expires = rec["expires_at"]
                cached.objects[key] = _Scan(chunks, key_ids, first, expires)
        return cached

    def _complete(self, ended: EndedCall, scan: _CallScan, now: datetime) -> bool:
        waited = now - ended.staged_at
        if waited >= self.settle_timeout:
            return True
        if ended.audio_chunks is None:
            return waited >= self.settle
        have = scan.seqs()
        return all(set(range(n)) <= have.get(leg, set()) for leg, n in ended.audio_chunks.items())

    async def _manifest(self, ended: EndedCall) -> dict[str, Any] | None:
        key = layout.manifest_key(ended.workspace_id, ended.call_id, ended.call_started_at)
        if await self.store.head(key) is None:
            return None
        doc: dict[str, Any] = json.loads(await self.store.get(key))
        return doc

    async def _find_manifest(
        self, ws: str, call: str, audio: list[ObjectInfo], transcript: list[ObjectInfo]
    ) -> dict[str, Any] | None:
        """A finished call's manifest, looked up without its ENDED marker (gone once finished):
        the call's start is within a day of its first staged record."""
        when: datetime | None = None
        if audio:
            first = await self.staging.records(audio[0].key)
            when = min((self._codec.decode("SealedAudioChunk", r)["captured_at"] for r in first),
                       default=None)  # fmt: skip
        elif transcript:
            segments = await self._segments(ws, call, transcript[:1])
            when = min((s["started_at"] for s in segments), default=None)
        if when is None:
            return None
        for delta in (0, -1, 1):
            key = layout.manifest_key(ws, call, when + timedelta(days=delta))
            if await self.store.head(key) is not None:
                doc: dict[str, Any] = json.loads(await self.store.get(key))
                return doc
        return None

    def _orphan(
        self, ws: str, call: str, scan: _CallScan, transcript: list[ObjectInfo], now: datetime
    ) -> EndedCall:
        firsts = [s.first_captured_at for s in scan.objects.values() if s.first_captured_at]
        expires = [s.expires_at for s in scan.objects.values() if s.expires_at]
        started = min(firsts, default=now)
        return EndedCall(
            workspace_id=ws, call_id=call, region=self.store.region, call_started_at=started,
            ended_at=None, duration_ms=None, expires_at=max(expires, default=now),
            audio_chunks=None, staged_at=now - self.settle_timeout,
        )  # fmt: skip

    # -- writing

    async def _write(
        self,
        ended: EndedCall,
        audio: list[ObjectInfo],
        transcript: list[ObjectInfo],
        scan: _CallScan,
        existing: dict[str, Any] | None,
        now: datetime,
    ) -> tuple[dict[str, Any], int]:
        ws, call = ended.workspace_id, ended.call_id
        key_id, key = await self.keys.call_key(ws, call, ended.call_started_at)
        artifacts: dict[str, Any] = dict((existing or {}).get("artifacts", {}))
        late = 0
        if audio and "recording" in artifacts:
            late = len(audio)  # a replay of audio already in the recording
        elif audio:
            artifacts["recording"] = await self._recording(ended, audio, scan, key_id, key)
        segments = await self._segments(ws, call, transcript)
        for artifact in ("transcript", "summary"):
            mine = [s for s in segments if s["artifact"] == artifact]
            if not mine:
                continue
            if artifact in artifacts:
                mine = await self._read_document(ended, artifact, artifacts[artifact]) + mine
            artifacts[artifact] = await self._document(ended, artifact, mine, key_id, key)
        have = scan.seqs()
        missing = {
            leg: len(set(range(n)) - have.get(leg, set()))
            for leg, n in (ended.audio_chunks or {}).items()
        }
        manifest = {
            "workspace_id": ws, "call_id": call, "region": ended.region,
            "call_started_at": ended.call_started_at.isoformat(),
            "ended_at": ended.ended_at.isoformat() if ended.ended_at else None,
            "duration_ms": ended.duration_ms,
            "expires_at": ended.expires_at.isoformat(),
            "audio_chunks_expected": ended.audio_chunks,
            "audio_chunks_missing": (existing or {}).get("audio_chunks_missing", missing),
            "artifacts": artifacts,
            "finished_at": (existing or {}).get("finished_at", now.isoformat()),
            "amended_at": now.isoformat() if existing else None,
        }  # fmt: skip
        await self.store.put(
            layout.manifest_key(ws, call, ended.call_started_at),
            json.dumps(manifest, sort_keys=True, indent=1).encode(),
            metadata=_metadata(ended, None, None),
            content_type="application/json",
        )
        return manifest, late

    async def _recording(
        self, ended: EndedCall, audio: list[ObjectInfo], scan: _CallScan, key_id: str, key: bytes
    ) -> dict[str, Any]:
        ws, call = ended.workspace_id, ended.call_id
        chunk_keys = {
            kid: await self.keys.key_for(kid, workspace_id=ws, call_id=call)
            for kid in set().union(*(s.key_ids for s in scan.objects.values()))
        }
        self.tmp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.tmp_dir / f"{uuid.uuid4().hex}.cvs.part"
        try:
            built = await asyncio.to_thread(
                self._build, ended, [o.key for o in audio], chunk_keys, key_id, key, tmp
            )
            obj_key = layout.artifact_key(ws, call, ended.call_started_at, "recording")
            meta = _metadata(ended, key_id, built)
            try:
                await self.store.upload_file(
                    obj_key, tmp, metadata=meta, content_type="application/octet-stream",
                    part_size=self.part_size,
                )  # fmt: skip
            except ObjectExists:
                head = await self.store.head(obj_key)
                if head is None:  # deleted between the two calls: let the next pass retry
                    raise
                meta, built["ciphertext_size"] = head["metadata"], head["size"]
                log.info("recording_already_written", workspace_id=ws, call_id=call)
        finally:
            tmp.unlink(missing_ok=True)
        return {
            "key": obj_key, "format": FORMAT, "content_type": "audio/mpeg",
            "key_id": meta["cv-key-id"], "size": built["ciphertext_size"],
            "duration_ms": int(meta["cv-duration-ms"]),
            "plaintext_sha256": meta["cv-plaintext-sha256"],
            "ciphertext_sha256": meta["cv-ciphertext-sha256"],
        }  # fmt: skip

    def _build(
        self, ended: EndedCall, keys: list[str], chunk_keys: Mapping[str, bytes],
        key_id: str, key: bytes, tmp: Path,
    ) -> dict[str, Any]:  # fmt: skip
        """Blocking (runs on a thread): stream staged chunks into the encrypted MP3 temp file."""
        ws, call = ended.workspace_id, ended.call_id
        builder = RecordingBuilder()
        enc = Encryptor(key, key_id, Aad(ws, call, "recording", ended.region),
                        segment_size=DEFAULT_SEGMENT_SIZE)  # fmt: skip
        plain, cipher, size = hashlib.sha256(), hashlib.sha256(), 0
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
        with os.fdopen(fd, "wb") as out:

            def write(mp3: bytes) -> None:
                nonlocal size
                plain.update(mp3)
                sealed = enc.update(mp3)
                cipher.update(sealed)
                size += len(sealed)
                out.write(sealed)

            for body in _prefetched(self.store.get_blocking, keys):
                for raw in unframe(body):
                    rec = self._codec.decode("SealedAudioChunk", raw)
                    aad = Aad(ws, call, "audio", rec["region"])
                    rec["payload"] = unseal(chunk_keys.__getitem__, rec["ciphertext"], aad)
                    builder.add(rec)
                    write(builder.take_mp3())
            write(builder.finish())
            tail = enc.finalize()
            cipher.update(tail)
            size += len(tail)
            out.write(tail)
            out.flush()
            os.fsync(out.fileno())
        return {
            "duration_ms": round(builder.duration_s * 1000),
            "plaintext_sha256": plain.hexdigest(),
            "ciphertext_sha256": cipher.hexdigest(),
            "ciphertext_size": size,
        }

    async def _segments(
        self, ws: str, call: str, objects: list[ObjectInfo]
    ) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for obj in objects:
            for raw in await self.staging.records(obj.key):
                rec = self._codec.decode("SealedTranscriptSegment", raw)
                artifact = "summary" if rec["kind"] == "SUMMARY" else "transcript"
                blob = rec["ciphertext"]
                key = await self.keys.key_for(peek_key_id(blob), workspace_id=ws, call_id=call)
                text = unseal(key, blob, Aad(ws, call, artifact, rec["region"])).decode()
                out[rec["segment_id"]] = {  # a corrected segment reuses its id: newest wins
                    "artifact": artifact, "segment_id": rec["segment_id"],
                    "speaker": rec["speaker"], "started_at": rec["started_at"],
                    "ended_at": rec["ended_at"], "language": rec["language"],
                    "confidence": rec["confidence"], "redaction_count": rec["redaction_count"],
                    "text": text,
                }  # fmt: skip
        return list(out.values())

    async def _document(
        self, ended: EndedCall, artifact: Artifact, segments: list[dict[str, Any]],
        key_id: str, key: bytes,
    ) -> dict[str, Any]:  # fmt: skip
        by_id = {s["segment_id"]: s for s in segments}  # later entries (staged) win
        items = sorted(by_id.values(), key=lambda s: (_iso(s["started_at"]), s["segment_id"]))
        doc = {
            "workspace_id": ended.workspace_id, "call_id": ended.call_id, "kind": artifact,
            "segments": [
                {k: _iso(v) if isinstance(v, datetime) else v for k, v in s.items()
                 if k != "artifact"} for s in items
            ],
        }  # fmt: skip
        plaintext = json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()
        enc = Encryptor(key, key_id, _document_aad(ended, artifact))
        body = enc.update(plaintext) + enc.finalize()
        built = {
            "duration_ms": ended.duration_ms or 0,
            "plaintext_sha256": hashlib.sha256(plaintext).hexdigest(),
            "ciphertext_sha256": hashlib.sha256(body).hexdigest(),
        }
        obj_key = layout.artifact_key(ended.workspace_id, ended.call_id, ended.call_started_at,
                                      artifact)  # fmt: skip
        await self.store.put(obj_key, body, metadata=_metadata(ended, key_id, built))
        return {
            "key": obj_key, "format": FORMAT, "content_type": "application/json",
            "key_id": key_id, "size": len(body), "segments": len(items),
            "plaintext_sha256": built["plaintext_sha256"],
            "ciphertext_sha256": built["ciphertext_sha256"],
        }  # fmt: skip

    async def _read_document(
        self, ended: EndedCall, artifact: Artifact, entry: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        ws, call = ended.workspace_id, ended.call_id
        body = await self.store.get(entry["key"])
        key = await self.keys.key_for(entry["key_id"], workspace_id=ws, call_id=call)
        plaintext = b"".join(decrypt_stream(key, [body], _document_aad(ended, artifact)))
        segments: list[dict[str, Any]] = json.loads(plaintext)["segments"]
        return [{**s, "artifact": artifact} for s in segments]


def _prefetched(fetch: Callable[[str], bytes], keys: list[str]) -> Iterator[bytes]:
    """``fetch(key)`` for each key, in order, with up to ``_FETCH_AHEAD`` requests in flight:
    the round trips overlap while memory stays at a few small objects."""
    with ThreadPoolExecutor(max_workers=_FETCH_AHEAD, thread_name_prefix="staged-get") as pool:
        pending: deque[Future[bytes]] = deque()
        for key in keys:
            pending.append(pool.submit(fetch, key))
            if len(pending) >= _FETCH_AHEAD:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _document_aad(ended: EndedCall, artifact: Artifact) -> Aad:
    return Aad(ended.workspace_id, ended.call_id, f"{artifact}-document", ended.region)


def _ended_from_manifest(doc: Mapping[str, Any]) -> EndedCall:
    def when(name: str) -> datetime | None:
        value = doc.get(name)
        return datetime.fromisoformat(value).astimezone(UTC) if value else None

    started, expires = when("call_started_at"), when("expires_at")
    assert started is not None and expires is not None
    return EndedCall(
        workspace_id=doc["workspace_id"], call_id=doc["call_id"], region=doc["region"],
        call_started_at=started, ended_at=when("ended_at"), duration_ms=doc.get("duration_ms"),
        expires_at=expires, audio_chunks=doc.get("audio_chunks_expected"),
        staged_at=datetime.now(UTC),
    )  # fmt: skip


def _metadata(
    ended: EndedCall, key_id: str | None, built: Mapping[str, Any] | None
) -> dict[str, str]:
    """S3 user metadata: enough to check, expire and decrypt the object without the manifest."""
    meta = {
        "cv-workspace": ended.workspace_id,
        "cv-call": ended.call_id,
        "cv-region": ended.region,
        "cv-expires-at": ended.expires_at.isoformat(),
    }
    if key_id is not None and built is not None:
        meta |= {
            "cv-format": FORMAT,
            "cv-key-id": key_id,
            "cv-duration-ms": str(built["duration_ms"]),
            "cv-plaintext-sha256": built["plaintext_sha256"],
            "cv-ciphertext-sha256": built["ciphertext_sha256"],
        }
    return meta


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
