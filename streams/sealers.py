"""The three governance processors: ``ingest.{metadata,audio,transcript}`` -> ``sealed.*``.

One loop (:class:`Sealer`) for all three, so the guarantees are written once: every record is
either sealed and acknowledged by the broker (acks=all), dropped for a policy reason that is
counted, or dead-lettered with the reason — and the batch's offsets advance only after all of
that is durable. A subclass only says how one record is sealed.

Dead letters of *content* (audio, transcript) never carry the content: a record that could not
be governed must not become a clear copy with a longer life than the workspace allows. They carry
where it came from, its size and SHA-256, and why, which is what an operator needs to find and
replay it from the short-lived ingest topic.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar

from faust.types import EventT

from callvault.audit import audit_event
from callvault.control.workspaces import WorkspacePolicy
from callvault.crypto.errors import CryptoError, KeyDestroyed
from schemas.codec import get_codec
from schemas.errors import SchemaDecodeError, SchemaEncodeError
from streams.errors import StreamError, UnknownWorkspace
from streams.governance import (
    CallKey,
    Dropped,
    content_verdict,
    require_policy,
    seal_audio_chunk,
    seal_transcript_segment,
    utcnow,
)
from streams.metadata import seal_call_event
from streams.runtime import Runtime

Outcome = dict[str, Any] | Dropped  # the sealed record, or why the content is not stored


class Sealer(ABC):
    stage: ClassVar[str]
    in_schema: ClassVar[str]
    out_schema: ClassVar[str]
    out_topic: ClassVar[str]  # logical names
    dead_letter_topic: ClassVar[str]
    #: Content kinds: dead letters keep a digest, not the bytes.
    content: ClassVar[bool] = True

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._codec = get_codec()
        self._out = rt.topics.name(self.out_topic)

    @abstractmethod
    async def seal(self, record: dict[str, Any], policy: WorkspacePolicy) -> Outcome:
        """The sealed record, or why the content is dropped."""

    async def call_key(self, record: Mapping[str, Any]) -> CallKey:
        key_id, key = await self.rt.call_key(
            record["workspace_id"], record["call_id"], record.get("call_started_at")
        )
        return CallKey(key_id, key)

    async def handle(self, events: Sequence[EventT]) -> None:
        rt = self.rt
        pending: list[Awaitable[Any]] = []
        started = time.perf_counter()
        records = [self._decode(event) for event in events]
        await self._prefetch_keys([r for r in records if isinstance(r, dict)])
        for event, record in zip(events, records, strict=True):
            rt.metrics.records_in.labels(self.stage).inc()
            try:
                if isinstance(record, Exception):
                    raise record
                pending.extend(await self._one(event, record))
            except SchemaDecodeError as exc:
                pending.append(await self._dead(event, "undecodable", exc))
            except SchemaEncodeError as exc:
                pending.append(await self._dead(event, "unencodable", exc))
            except StreamError as exc:
                pending.append(await self._dead(event, exc.reason, exc))
        await rt.deliver(pending, self.stage)
        rt.metrics.batch_seconds.labels(self.stage).observe(time.perf_counter() - started)

    def _decode(self, event: EventT) -> dict[str, Any] | SchemaDecodeError:
        value = event.message.value
        if value is None:
            return SchemaDecodeError("record has no value")
        try:
            return self._codec.decode(self.in_schema, value)
        except SchemaDecodeError as exc:
            return exc

    async def _prefetch_keys(self, records: list[dict[str, Any]]) -> None:
        """Get or create the data keys of every call in the batch concurrently.

        A new call's key is a durable write to ``control.keys``; done one record at a time
        they serialise the whole batch behind broker round trips. Failures are ignored here:
        the per-record path meets them again and handles them there (shredded, no policy).
        """
        known = self.rt.workspaces.get
        calls = {
            (r["workspace_id"], r["call_id"]): r
            for r in records
            if r["call_id"] and (p := known(r["workspace_id"])) is not None and not p.deleted
        }
        await asyncio.gather(*(self.call_key(r) for r in calls.values()), return_exceptions=True)

    async def _one(self, event: EventT, record: dict[str, Any]) -> list[Awaitable[Any]]:
        rt = self.rt
        workspace = record["workspace_id"]
        try:
            policy = require_policy(workspace, await rt.policy(workspace))
        except UnknownWorkspace as exc:
            audit = audit_event(
                "stream.record.refused", actor_kind="SERVICE", actor_id=f"worker:{self.stage}",
                outcome="DENIED", workspace_id=workspace, target=record.get("call_id"),
                details={"reason": exc.reason, "topic": event.message.topic},
            )  # fmt: skip
            return [await rt.audit(audit), await self._dead(event, exc.reason, exc)]
        try:
            result = await self.seal(record, policy)
        except KeyDestroyed:
            # the call (or workspace) was erased: its content must not be sealed again
            result = Dropped("erased")
        except CryptoError as exc:
            raise _Unsealable(str(exc)) from exc
        if isinstance(result, Dropped):
            rt.metrics.content_dropped.labels(self.stage, result.reason).inc()
            return []
        out = self._codec.encode(self.out_schema, result)
        headers = [("region", result["region"].encode()), ("workspace", workspace.encode())]
        rt.metrics.records_out.labels(self.stage).inc()
        return [await rt.send(self._out, result["call_id"].encode(), out, headers)]

    async def _dead(self, event: EventT, reason: str, error: BaseException) -> Awaitable[Any]:
        value = event.message.value
        if self.content and value:
            digest = hashlib.sha256(value).hexdigest()
            error = type(error)(f"{error} [content withheld: {len(value)} bytes, sha256 {digest}]")
        return await self.rt.dead_letter(
            event,
            stage=self.stage,
            reason=reason,
            error=error,
            topic=self.rt.topics.name(self.dead_letter_topic),
            keep_value=not self.content,
        )


class _Unsealable(StreamError):
    reason = "unsealable"


class MetadataSealer(Sealer):
    """Validate, suppression rules, hash and mask numbers, seal the full numbers, stamp."""

    stage = "seal.metadata"
    in_schema, out_schema = "CallEvent", "SealedCallEvent"
    out_topic, dead_letter_topic = "sealed.metadata", "deadletter.metadata"
    content = False  # metadata dead letters keep the record: numbers there expire in 30 days

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self._pepper = rt.settings.hash_pepper.get_secret_value().encode()

    async def seal(self, record: dict[str, Any], policy: WorkspacePolicy) -> dict[str, Any]:
        key = await self.call_key(record)
        sealed = seal_call_event(record, policy, pepper=self._pepper, key=key)
        if sealed["suppressed"]:
            self.rt.suppressed_calls.add(sealed["call_id"])
        return sealed


class ContentSealer(Sealer):
    """Audio and transcript: suppression in depth, then seal (and, for text, redact)."""

    seal_record: ClassVar[Callable[..., dict[str, Any]]]

    async def seal(self, record: dict[str, Any], policy: WorkspacePolicy) -> Outcome:
        known = record["call_id"] in self.rt.suppressed_calls
        verdict = content_verdict(record, policy, known_suppressed=known)
        if verdict is not None:
            return verdict
        key = await self.call_key(record)
        return type(self).seal_record(record, policy, key, now=utcnow())


class AudioSealer(ContentSealer):
    stage = "seal.audio"
    in_schema, out_schema = "AudioChunk", "SealedAudioChunk"
    out_topic, dead_letter_topic = "sealed.audio", "deadletter.audio"
    seal_record = staticmethod(seal_audio_chunk)


class TranscriptSealer(ContentSealer):
    stage = "seal.transcript"
    in_schema, out_schema = "TranscriptSegment", "SealedTranscriptSegment"
    out_topic, dead_letter_topic = "sealed.transcript", "deadletter.transcript"
    seal_record = staticmethod(seal_transcript_segment)
