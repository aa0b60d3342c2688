"""Replaying a topic by time window: the library behind ``callvault replay``.

Why it exists: an engineer re-drives the sinks after a fix (the sealed bytes again, byte for
byte, which every sink absorbs idempotently) or inspects what a topic held in a window (JSON
lines, optionally decrypted with the call keys, as an audited and permissioned act).

What it never does is resurrect data. Sealed topics are kept longer than any workspace retention
(366 days) and rely on crypto-shredding for expiry and erasure, so the log still holds records of
calls that are gone. :meth:`RetentionGate.verdict` is the one question "may this record still
exist?", asked for every record whatever the destination and whether or not it is decrypted.

Only the sealed topics and ``audit.events`` are replayable. ``ingest.*`` holds what the edge
produced before suppression, PCI redaction and sealing (clear phone numbers, audio, card numbers
in text): replaying it would route around every governance step, and republishing it would feed
the processors data whose suppression or erasure may have been decided since. Control topics
hold wrapped keys and token digests, dead-letter topics raw bad input. None of them is replayed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from callvault.audit import AuditLog, audit_event
from callvault.control.keys import KafkaKeyStore, Keys, open_keys
from callvault.control.view import CompactedView
from callvault.control.workspaces import WorkspacePolicy, workspace_view
from callvault.crypto.envelope import Aad, peek_key_id, unseal
from callvault.crypto.errors import DecryptionFailed, KeyDestroyed, KeyNotFound, KeyScopeMismatch
from callvault.errors import ControlError, KafkaUnavailable
from callvault.files import PRIVATE_MODE
from callvault.kafka_client import kafka_options
from callvault.settings import Settings
from callvault.topics import Topics, topic_partitions
from schemas.codec import get_codec
from schemas.errors import SchemaDecodeError

ACTION = "topics.replay"

#: logical topic -> the Avro record type every value of it has.
REPLAYABLE: dict[str, str] = {
    "sealed.metadata": "SealedCallEvent",
    "sealed.audio": "SealedAudioChunk",
    "sealed.transcript": "SealedTranscriptSegment",
    "audit.events": "AuditEvent",
}

#: Targets of ``--to-topic``. Not ``audit.events``: the audit chainer deduplicates by source
#: offset, not event id, so a republished audit event would be chained a second time.
REPUBLISHABLE = ("sealed.metadata", "sealed.audio", "sealed.transcript")

Verdict = Literal["erased", "expired"]


class ReplayRefused(ControlError):
    """The replay asked for is not allowed (unknown or raw topic, plaintext to a topic, ...)."""


# --------------------------------------------------------------------------------------------
# Time


_RELATIVE = re.compile(r"^-(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str, *, now: datetime | None = None) -> datetime:
    """ISO-8601 (a naive time is UTC), ``now``, or a relative ``-15m`` / ``-2h`` / ``-1d``.

    Relative forms exist because replays are mostly "what happened in the last hour", and typing
    the current UTC time correctly under pressure is how windows end up an hour off."""
    now = now or datetime.now(UTC)
    text = value.strip()
    if text.lower() == "now":
        return now
    m = _RELATIVE.match(text)
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{value!r} is neither ISO-8601 (2026-11-27T10:00:00Z), 'now' nor relative "
            "(-15m, -2h, -1d)"
        ) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


# --------------------------------------------------------------------------------------------
# The request and its result


@dataclass(frozen=True)
class ReplayRequest:
    topic: str
    since: datetime
    until: datetime
    workspace_id: str | None = None
    call_id: str | None = None
    decrypt: bool = False
    to_topic: str | None = None
    out: Path | None = None

    @property
    def schema(self) -> str:
        return REPLAYABLE[self.topic]

    @property
    def destination(self) -> str:
        if self.to_topic is not None:
            return f"topic:{self.to_topic}"
        return f"file:{self.out}" if self.out is not None else "stdout"

    def validate(self) -> None:
        """Everything refusable without touching Kafka, so a refusal costs nothing."""
        if self.topic not in REPLAYABLE:
            raise ReplayRefused(_not_replayable(self.topic))
        if self.since > self.until:
            raise ReplayRefused(
                f"--from {self.since.isoformat()} is after --to {self.until.isoformat()}"
            )
        if self.decrypt and self.schema not in SEALED:
            raise ReplayRefused(f"{self.topic} holds no sealed fields: nothing to decrypt")
        if self.to_topic is not None:
            if self.decrypt:
                raise ReplayRefused(
                    "--decrypt cannot be combined with --to-topic: plaintext is never published"
                )
            if self.out is not None:
                raise ReplayRefused("--to-topic and --out are alternatives: choose one")
            if self.to_topic not in REPUBLISHABLE:
                raise ReplayRefused(
                    f"cannot republish to {self.to_topic!r}; targets: {', '.join(REPUBLISHABLE)}"
                )
            if REPLAYABLE[self.to_topic] != self.schema:
                raise ReplayRefused(
                    f"{self.topic} holds {self.schema} records, {self.to_topic} holds "
                    f"{REPLAYABLE[self.to_topic]}: a record is only republished to a topic of "
                    "its own type"
                )

    def audit_details(self) -> dict[str, Any]:
        return {
            "topic": self.topic, "from": self.since.isoformat(), "to": self.until.isoformat(),
            "workspace_filter": self.workspace_id or "*", "call_filter": self.call_id or "*",
            "decrypt": self.decrypt, "destination": self.destination,
        }  # fmt: skip


def _not_replayable(topic: str) -> str:
    why = ""
    if topic.startswith("ingest."):
        why = " (raw ingest data is unsealed and ungoverned: it is never replayed)"
    elif topic.startswith(("control.", "deadletter.")):
        why = " (control and dead-letter topics are not replayed)"
    return f"topic {topic!r} is not replayable{why}; replayable: {', '.join(REPLAYABLE)}"


@dataclass
class ReplayCounts:
    """``matched`` are decoded records that pass the filters; the skipped ones are part of it.
    ``undecodable`` counts both values that are not the topic's Avro type and sealed fields that
    do not authenticate."""

    scanned: int = 0
    matched: int = 0
    written: int = 0
    skipped_erased: int = 0
    skipped_expired: int = 0
    undecodable: int = 0

    def as_json(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class PartitionRange:
    """Offsets [start, stop) of one partition: start from ``offsets_for_times(--from)``, stop
    at the first record after ``--to`` as the time index finds it, else the end offset."""

    partition: int
    start: int
    stop: int


@dataclass(frozen=True)
class ReplayResult:
    replay_id: str
    request: ReplayRequest
    counts: ReplayCounts
    partitions: list[PartitionRange] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        r = self.request
        return {
            "replay_id": self.replay_id, "topic": r.topic, "from": r.since.isoformat(),
            "to": r.until.isoformat(), "workspace": r.workspace_id, "call": r.call_id,
            "decrypt": r.decrypt, "destination": r.destination, **self.counts.as_json(),
        }  # fmt: skip


# --------------------------------------------------------------------------------------------
# Sealed fields


@dataclass(frozen=True)
class _SealedField:
    """Where a record type keeps its ciphertext, the AAD kind it was sealed with (see
    :mod:`streams.governance`) and the name its plaintext takes in the output."""

    field: str
    kind: Callable[[Mapping[str, Any]], str]
    clear: str
    render: Callable[[bytes], Any]


SEALED: dict[str, _SealedField] = {
    "SealedAudioChunk": _SealedField("ciphertext", lambda r: "audio", "payload", lambda b: b),
    "SealedTranscriptSegment": _SealedField(
        "ciphertext",
        lambda r: "summary" if r["kind"] == "SUMMARY" else "transcript",
        "text",
        lambda b: b.decode("utf-8"),
    ),
    "SealedCallEvent": _SealedField(
        "numbers_ciphertext", lambda r: "numbers", "numbers", lambda b: json.loads(b)
    ),
}


# --------------------------------------------------------------------------------------------
# May this record still exist?


class RetentionGate:
    """The one "is this record still allowed to exist" check of a replay.

    A sealed record is gone when its workspace was deleted (or has no policy at all), when its
    ``expires_at`` has passed, when the workspace's *current* retention has passed (a shortened
    retention; the sweeper may not have shredded it yet), or when its call key (or the workspace
    key above it) is destroyed or unknown. Audit events are kept at least a year whatever
    happened to the call they describe, so they always pass. Erasures (``control.erasure``)
    need no lookup of their own here: a workspace erasure marks the policy deleted and a subject
    erasure shreds the call keys before it deletes anything, so both are seen by the checks
    above the moment the request is carried out.
    """

    def __init__(
        self,
        policies: CompactedView[WorkspacePolicy],
        keys: KafkaKeyStore,
        *,
        now: datetime,
    ) -> None:
        self._policies = policies
        self._keys = keys
        self._now = now

    async def verdict(self, schema: str, record: Mapping[str, Any]) -> Verdict | None:
        """None when the record may be released; raises :class:`DecryptionFailed` for a
        ciphertext that names no key or another call's key."""
        sealed = SEALED.get(schema)
        if sealed is None:
            return None
        workspace_id, call_id = record["workspace_id"], record["call_id"]
        policy = self._policies.get(workspace_id)
        if policy is None or policy.deleted:
            return "erased"
        if record["expires_at"] <= self._now:
            return "expired"
        started = record.get("call_started_at")
        if started is not None and started + timedelta(days=policy.retention_days) <= self._now:
            return "expired"
        key_id = peek_key_id(record[sealed.field])
        if not await self._key_alive(key_id, workspace_id, call_id):
            return "erased"
        return None

    async def _key_alive(self, key_id: str, workspace_id: str, call_id: str) -> bool:
        """From the key records alone (no unwrapping): a replay that only republishes sealed
        bytes must not need the master key to know what it may not release."""
        record = await self._keys.get(key_id)
        if record is None or record["destroyed"]:
            return False
        if (record["scope"], record["workspace_id"], record["call_id"]) != (
            "CALL", workspace_id, call_id,
        ):  # fmt: skip
            raise KeyScopeMismatch(f"key {key_id} does not belong to call {call_id}")
        calls = await self._keys.by_call(workspace_id, call_id)
        if any(r["destroyed"] for r in calls if r["scope"] == "CALL"):
            return False  # a shredded call stays shredded, whatever key a record names
        parent = await self._keys.get(record["wrapping_key_id"])
        return parent is not None and not parent["destroyed"]


# --------------------------------------------------------------------------------------------
# Destinations


class Destination(Protocol):
    """Where released records go. ``written`` counts records durably handed over."""

    written: int

    async def open(self) -> None: ...

    async def write(
        self, message: ConsumerRecord[bytes, bytes], document: dict[str, Any]
    ) -> None: ...

    async def close(self) -> None: ...


class JsonLines:
    """One JSON document per record, to a file created 0600 (plaintext may be in it) or to a
    stream (stdout)."""

    def __init__(self, out: Path | None, stream: IO[str] | None = None) -> None:
        self._out = out
        self._stream = stream
        self._fh: IO[str] | None = None
        self.written = 0

    async def open(self) -> None:
        if self._out is None:
            self._fh = self._stream
            return
        try:
            fd = os.open(self._out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
        except OSError as exc:
            raise ControlError(f"cannot write {self._out}: {exc}") from None
        os.fchmod(fd, PRIVATE_MODE)  # also when the file existed with a wider mode
        self._fh = os.fdopen(fd, "w", encoding="utf-8")

    async def write(self, message: ConsumerRecord[bytes, bytes], document: dict[str, Any]) -> None:
        assert self._fh is not None
        self._fh.write(json.dumps(document, separators=(",", ":"), ensure_ascii=False) + "\n")
        self.written += 1

    async def close(self) -> None:
        if self._fh is None:
            return
        self._fh.flush()
        if self._out is not None:
            self._fh.close()


class Republish:
    """The original value, key, headers and timestamp, to a topic, with ``acks=all``.

    Idempotent downstream by construction: the bytes are identical, so the ClickHouse rows
    (ReplacingMergeTree keyed by call / event / segment id, same version) collapse, the recorder
    drops chunks at or below a leg's last seq and discards what arrives for a finished recording.
    The timestamp is kept so that a copy sits in the same time window as its original.
    """

    MAX_IN_FLIGHT = 1000

    def __init__(self, settings: Settings, logical_topic: str) -> None:
        self._settings = settings
        self.topic = Topics(settings).name(logical_topic)
        self._producer: AIOKafkaProducer | None = None
        self._pending: list[Awaitable[Any]] = []
        self.written = 0

    async def open(self) -> None:
        producer = AIOKafkaProducer(
            **kafka_options(self._settings), acks="all", enable_idempotence=True
        )
        try:
            await producer.start()
        except KafkaError as exc:
            raise KafkaUnavailable(f"cannot reach Kafka: {exc}") from exc
        self._producer = producer

    async def write(self, message: ConsumerRecord[bytes, bytes], document: dict[str, Any]) -> None:
        assert self._producer is not None
        try:
            self._pending.append(
                await self._producer.send(
                    self.topic, value=message.value, key=message.key,
                    headers=list(message.headers or ()), timestamp_ms=message.timestamp,
                )
            )  # fmt: skip
        except KafkaError as exc:
            raise KafkaUnavailable(f"cannot republish to {self.topic}: {exc}") from exc
        if len(self._pending) >= self.MAX_IN_FLIGHT:
            await self._drain()

    async def _drain(self) -> None:
        pending, self._pending = self._pending, []
        try:
            await asyncio.gather(*pending)
        except KafkaError as exc:
            raise KafkaUnavailable(f"cannot republish to {self.topic}: {exc}") from exc
        self.written += len(pending)

    async def close(self) -> None:
        if self._producer is None:
            return
        try:
            await self._drain()
        finally:
            await self._producer.stop()
            self._producer = None


# --------------------------------------------------------------------------------------------
# The replay


class Progress(Protocol):
    def total(self, n: int) -> None: ...

    def advance(self, n: int) -> None: ...


class _NoProgress:
    def total(self, n: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


async def replay(
    settings: Settings,
    request: ReplayRequest,
    destination: Destination,
    *,
    actor: str,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> ReplayResult:
    """Scan the window, release what passes the filters and the gate, count the rest.

    The caller has checked permissions. The replay is an audit event recorded before the
    destination is even opened (an access that cannot be audited does not happen); a second
    ``topics.replay`` event with the same ``replay_id`` carries the counts and the outcome.
    """
    request.validate()
    now = now or datetime.now(UTC)
    progress = progress or _NoProgress()
    replay_id = str(uuid.uuid4())
    counts = ReplayCounts()
    policies = workspace_view(settings)
    await policies.start()
    try:
        region = None
        if request.workspace_id is not None:
            policy = policies.get(request.workspace_id)
            if policy is None:
                raise ReplayRefused(f"workspace {request.workspace_id!r} does not exist")
            region = policy.region
        async with open_keys(settings) as keys, _Scanner(settings, request) as scanner:
            ranges = await scanner.plan()
            audit = AuditLog(settings, keys.store.producer)

            async def record(phase: str, outcome: Any, extra: Mapping[str, Any]) -> None:
                await audit.record(
                    audit_event(
                        ACTION, actor_kind="USER", actor_id=actor, outcome=outcome,
                        workspace_id=request.workspace_id, region=region,
                        target=f"topic:{request.topic}",
                        details={**request.audit_details(), "replay_id": replay_id,
                                 "phase": phase, **extra},
                    )
                )  # fmt: skip

            await record("started", "SUCCESS", {"planned": sum(r.stop - r.start for r in ranges)})
            progress.total(sum(r.stop - r.start for r in ranges))
            gate = RetentionGate(policies, keys.store, now=now)
            try:
                await destination.open()
                try:
                    await _run(scanner, request, gate, keys, destination, counts, progress)
                finally:
                    await destination.close()
                counts.written = destination.written
            except BaseException as exc:
                counts.written = destination.written
                with contextlib.suppress(Exception):  # never mask why the replay failed
                    await record(
                        "failed", "FAILURE", {**counts.as_json(), "error": repr(exc)[:300]}
                    )
                raise
            await record("completed", "SUCCESS", counts.as_json())
            return ReplayResult(replay_id, request, counts, ranges)
    finally:
        await policies.stop()


async def _run(
    scanner: _Scanner,
    request: ReplayRequest,
    gate: RetentionGate,
    keys: Keys,
    destination: Destination,
    counts: ReplayCounts,
    progress: Progress,
) -> None:
    codec, schema = get_codec(), request.schema
    async for message in scanner.messages(progress):
        counts.scanned += 1
        try:
            record = codec.decode(schema, message.value)
        except SchemaDecodeError:
            counts.undecodable += 1
            continue
        if not _selected(schema, record, request):
            continue
        counts.matched += 1
        try:
            verdict = await gate.verdict(schema, record)
            if verdict is None and request.decrypt:
                record = await _open(keys, schema, record)
        except (KeyDestroyed, KeyNotFound):
            verdict = "erased"  # shredded between the gate and the unwrap
        except DecryptionFailed:
            counts.undecodable += 1
            continue
        if verdict == "erased":
            counts.skipped_erased += 1
        elif verdict == "expired":
            counts.skipped_expired += 1
        else:
            await destination.write(message, _document(request, message, record))


def _selected(schema: str, record: Mapping[str, Any], request: ReplayRequest) -> bool:
    if request.workspace_id is not None and record.get("workspace_id") != request.workspace_id:
        return False
    if request.call_id is None:
        return True
    if schema == "AuditEvent":
        return record.get("target") == f"call:{request.call_id}"
    return record.get("call_id") == request.call_id


async def _open(keys: Keys, schema: str, record: dict[str, Any]) -> dict[str, Any]:
    sealed = SEALED[schema]
    blob = record[sealed.field]
    workspace_id, call_id = record["workspace_id"], record["call_id"]
    key = await keys.ring.key_for(peek_key_id(blob), workspace_id=workspace_id, call_id=call_id)
    aad = Aad(workspace_id, call_id, sealed.kind(record), record["region"])
    plaintext = unseal(key, blob, aad)
    opened = {k: v for k, v in record.items() if k != sealed.field}
    opened[sealed.clear] = sealed.render(plaintext)
    return opened


def _document(
    request: ReplayRequest, message: ConsumerRecord[bytes, bytes], record: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "topic": request.topic,
        "partition": message.partition,
        "offset": message.offset,
        "timestamp": datetime.fromtimestamp(message.timestamp / 1000, UTC).isoformat(),
        "key": message.key.decode("utf-8", "backslashreplace") if message.key else None,
        "type": request.schema,
        "decrypted": request.decrypt,
        "record": _jsonable(record),
    }


def _jsonable(value: Any) -> Any:
    """Bytes as base64 (ciphertext, or audio with --decrypt), times as ISO-8601."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class _Scanner:
    """A group-less consumer over every partition of one topic, bounded in offsets at start:
    records produced during the replay (its own republished copies included) are not read."""

    def __init__(self, settings: Settings, request: ReplayRequest) -> None:
        self._settings = settings
        self._request = request
        self.topic = Topics(settings).name(request.topic)
        self._consumer: AIOKafkaConsumer | None = None
        self._ranges: list[PartitionRange] = []

    async def __aenter__(self) -> _Scanner:
        consumer = AIOKafkaConsumer(
            **kafka_options(self._settings),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,  # reads end at a known offset: do not long-poll there
            request_timeout_ms=int(self._settings.kafka.request_timeout_s * 1000),
        )
        try:
            await consumer.start()
        except KafkaError as exc:
            raise KafkaUnavailable(f"cannot reach Kafka: {exc}") from exc
        self._consumer = consumer
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def plan(self) -> list[PartitionRange]:
        consumer = self._consumer
        assert consumer is not None
        try:
            partitions = await topic_partitions(consumer, self.topic)
            if not partitions:
                raise ReplayRefused(
                    f"topic {self.topic} does not exist (run `callvault topics ensure`)"
                )
            tps = [TopicPartition(self.topic, p) for p in partitions]
            since, until = _ms(self._request.since), _ms(self._request.until)
            starts = await consumer.offsets_for_times(dict.fromkeys(tps, since))
            afters = await consumer.offsets_for_times(dict.fromkeys(tps, until + 1))
            ends = await consumer.end_offsets(tps)
        except KafkaError as exc:
            raise KafkaUnavailable(f"cannot read {self.topic}: {exc}") from exc
        ranges = []
        for tp in tps:
            first, after = starts.get(tp), afters.get(tp)
            if first is None:
                continue  # nothing at or after --from in this partition
            stop = min(ends[tp], after.offset if after is not None else ends[tp])
            if first.offset < stop:
                ranges.append(PartitionRange(tp.partition, first.offset, stop))
        self._ranges = ranges
        return ranges

    async def messages(self, progress: Progress) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
        """Records of the planned ranges, per partition in offset order; a partition ends at its
        stop offset or at its first record stamped after ``--to``."""
        consumer = self._consumer
        assert consumer is not None
        until = _ms(self._request.until)
        active = {TopicPartition(self.topic, r.partition): r for r in self._ranges}
        consumer.assign(list(active))
        for tp, r in active.items():
            consumer.seek(tp, r.start)

        def finish(tp: TopicPartition, at: int) -> None:
            progress.advance(max(0, active[tp].stop - at))
            consumer.pause(tp)
            del active[tp]

        try:
            while active:
                batches = await consumer.getmany(*active, timeout_ms=500)
                for tp, batch in batches.items():
                    for message in batch:
                        if tp not in active:
                            break
                        if message.offset >= active[tp].stop or message.timestamp > until:
                            finish(tp, message.offset)
                            break
                        progress.advance(1)
                        yield message
                for tp in list(active):
                    position = await consumer.position(tp)
                    if position >= active[tp].stop:
                        finish(tp, position)
        except KafkaError as exc:
            raise KafkaUnavailable(f"cannot read {self.topic}: {exc}") from exc
