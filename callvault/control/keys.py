"""Encryption keys on Kafka: the ``control.keys`` key store, and the audited key operations.

:class:`KafkaKeyStore` is the :class:`~callvault.crypto.keyring.KeyStore` every process uses: a
live view of the compacted ``control.keys`` topic (value: Avro ``KeyRecord``, key: ``key_id``),
indexed by workspace and by (workspace, call) as records arrive, plus an ``acks=all`` producer.
:func:`open_keyring` / :func:`open_keys` give a process its :class:`~callvault.crypto.KeyRing`
wired to that store; :class:`KeyAdmin` is what ``callvault keys`` drives (rotation, shredding),
each operation an audit event that names key ids, never key material.

How a shred reaches running processes
-------------------------------------

A shred writes, for every key of the call (or workspace), a record with ``destroyed=True`` and an
empty ``wrapped_key``, and returns once Kafka acknowledged it (``acks=all``) and the writer's own
view shows it. Every other process's view applies the record as soon as it fetches it (the view
polls continuously) and calls the store's listeners — :func:`open_keys` subscribes
``KeyRing.forget`` — so each ring drops its cached copy. A destroyed workspace key also makes the
store forget every call key still wrapped under it. From then on the ring must read the record,
sees it destroyed, and raises :class:`~callvault.crypto.KeyDestroyed`. Propagation is one Kafka
fetch (milliseconds on a healthy cluster; the integration test measures it). A caller that needs
"a shred finished anywhere before this point is visible here" calls :meth:`KafkaKeyStore.sync`.

A listener that raises stops the view (fail closed): every later store read raises
:class:`~callvault.errors.KafkaUnavailable` rather than answer from a view that may be missing a
shred. A process cut off from Kafka keeps its view as it was, so it can keep using keys it had
already cached until it reconnects; bounding that needs a cache TTL in the ring.

Destroyed is final
------------------

:meth:`KafkaKeyStore.put` refuses a live record over a destroyed one (``KeyDestroyed``). Kafka has
no compare-and-set, so a writer whose view had not yet seen a shred from another process could
still write a live record after it. Two rules close that: (1) a key id once seen destroyed stays
destroyed for the view's lifetime — reads return it destroyed with no wrapped bytes, whatever
record comes later; (2) the writer itself checks after its write is visible, and if a shred landed
just before it, re-writes the destroyed record and raises ``KeyDestroyed``. A writer that crashes
between its write and that check leaves a live record after the destroyed one; once compaction
removed the destroyed record, a fresh reader would see the key live again. Operations that
re-write existing keys (rotation, re-wrap) therefore must not race shreds of the same workspace
(see :mod:`callvault.crypto.keyring`).

The crypto-shredding guarantee
------------------------------

Data is sealed under per-call keys; a call key is stored only wrapped under its workspace key, a
workspace key only wrapped under the master key (local key file or AWS KMS). Shredding a call
makes every artifact of the call unreadable wherever a copy of its ciphertext lives (Kafka
history, S3, replays): AES-256-GCM without the key. Precisely:

* **Running processes** stop using the key within one Kafka fetch of the shred (above).
* **The key topic**: the destroyed record replaces the wrapped key for every new reader at once,
  but *older messages still hold the wrapped bytes until the log cleaner compacts them*. The
  topic is created with ``max.compaction.lag.ms`` = 24 h (:mod:`callvault.topics`), the upper
  bound Kafka puts on how long a superseded record stays ineligible for compaction; ``segment.ms``
  = 1 h rolls the active segment (Kafka rolls on the next append, so an idle topic can hold it
  longer), and the cleaner runs on its own schedule. So the wrapped call key survives in the
  log, on every replica, for about 24 h after the shred — and the same holds for older wrapped
  copies left by earlier re-wraps.
* **Within that window** the leftover wrapped call key is useless without its workspace key. For a
  *call* shred the workspace key is still live: someone who can read the raw topic *and* unwrap
  the workspace key (which needs the master key: the key file, or KMS ``Decrypt`` permission) can
  recover the call key until compaction. For a *workspace* shred the workspace key is destroyed
  too; its wrapped bytes linger for the same window, so recovery needs raw log access *and* the
  master key. After compaction nothing wrapped remains anywhere in the topic.
* **Outside the guarantee**: copies of the topic's disks taken during the window (backups,
  mirrored clusters, tiered storage). To extend the shred to those, rotate the master key and
  retire the old version (``callvault keys rotate-master --retire-old``) once the window has
  passed: every wrapped workspace key in such a copy is then undecryptable. Also outside: the
  short-retention ``ingest.*`` topics, which hold call data before it is sealed and expire by
  retention, not by shredding; and a recreated workspace or call id (a shredded id stays shredded:
  the ring refuses to mint new keys for it).
* The destroyed records themselves are never removed by compaction (they are not tombstones), so
  *that* a key was shredded, and when (the Kafka timestamp), stays auditable.

A shred of a call or workspace that has no keys yet writes a destroyed *marker* record, so data
arriving later cannot get a fresh key and quietly undo the erasure.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

import structlog

from callvault.audit import ActorKind, AuditLog, Outcome, audit_event, cli_actor
from callvault.control.directory import ControlDirectory
from callvault.control.view import CompactedView
from callvault.control.workspaces import workspace_view
from callvault.crypto.errors import KeyDestroyed
from callvault.crypto.keyring import ALGORITHM, KeyRecord, KeyRing, KeyScope, WorkspaceRotation
from callvault.crypto.providers import LocalKeyFileProvider, MasterKeyProvider
from callvault.errors import CallvaultError, ControlError, KafkaUnavailable
from callvault.kafka_client import kafka_options
from callvault.keys import build_provider
from callvault.settings import Settings
from callvault.topics import Topics

__all__ = [
    "KafkaKeyStore",
    "KeyAdmin",
    "KeyListener",
    "Keys",
    "MasterRotation",
    "ShredResult",
    "describe_key",
    "open_keyring",
    "open_keys",
]

log = structlog.get_logger(__name__)

KeyListener = Callable[[str], None]
"""Called with a key id that was destroyed (or removed): drop any cached copy of it."""


def _to_record(raw: dict[str, Any]) -> KeyRecord:
    return {
        "key_id": raw["key_id"],
        "scope": raw["scope"],
        "workspace_id": raw.get("workspace_id"),
        "call_id": raw.get("call_id"),
        "wrapped_key": bytes(raw["wrapped_key"]),
        "wrapping_key_id": raw["wrapping_key_id"],
        "algorithm": raw.get("algorithm") or ALGORITHM,
        "created_at": raw["created_at"],
        "destroyed": bool(raw.get("destroyed", False)),
        "call_started_at": raw.get("call_started_at"),
    }


def _as_destroyed(record: KeyRecord) -> KeyRecord:
    out = record.copy()
    out["wrapped_key"] = b""
    out["destroyed"] = True
    return out


def describe_key(record: KeyRecord) -> dict[str, Any]:
    """What operators see of a key record: everything but the wrapped key."""
    return {
        "key_id": record["key_id"],
        "scope": record["scope"],
        "workspace_id": record["workspace_id"],
        "call_id": record["call_id"],
        "wrapping_key_id": record["wrapping_key_id"],
        "algorithm": record["algorithm"],
        "created_at": record["created_at"].isoformat(),
        "destroyed": record["destroyed"],
        "call_started_at": _iso(record.get("call_started_at")),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class KafkaKeyStore(ControlDirectory[KeyRecord]):
    """A :class:`~callvault.crypto.keyring.KeyStore` over the compacted ``control.keys`` topic.

    Use as ``async with KafkaKeyStore(settings) as store`` (or :meth:`start` / :meth:`stop`).
    Reads answer from the live view (snapshots: copies the caller may keep); :meth:`put` returns
    once the write is acknowledged by every in-sync replica and visible in this view.
    """

    schema = "KeyRecord"

    def __init__(self, settings: Settings, *, on_destroyed: KeyListener | None = None) -> None:
        self._listeners: list[KeyListener] = [on_destroyed] if on_destroyed else []
        self._destroyed: set[str] = set()
        self._owner: dict[str, tuple[str | None, str | None]] = {}
        self._by_workspace: dict[str, dict[str, None]] = {}
        self._by_call: dict[tuple[str, str], dict[str, None]] = {}
        view: CompactedView[KeyRecord] = CompactedView(
            kafka_options(settings),
            Topics(settings).name("control.keys"),
            "KeyRecord",
            _to_record,
            request_timeout_s=settings.kafka.request_timeout_s,
            on_change=self._apply,
        )
        super().__init__(settings, view)

    async def start(self) -> Self:
        """Load the topic and start tailing it (for long-lived processes; same as entering)."""
        return await self.__aenter__()

    async def stop(self) -> None:
        await self.__aexit__(None, None, None)

    @property
    def topic(self) -> str:
        return self._view.topic

    def subscribe(self, listener: KeyListener) -> Callable[[], None]:
        """Call ``listener(key_id)`` for every key seen destroyed from now on; returns the
        unsubscribe function. ``KeyRing.forget`` is the listener every ring registers."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    async def sync(self, timeout_s: float | None = None) -> None:
        """Wait until every key record written (by any process) before this call is visible."""
        self._check_usable()
        await self._view.sync(timeout_s)

    # -- KeyStore

    async def get(self, key_id: str) -> KeyRecord | None:
        self._check_usable()
        return self._read(key_id)

    async def put(self, record: KeyRecord) -> None:
        """Write ``record``; durable and visible here when it returns.

        A destroyed record is always written without key material. A live record over a key that
        was destroyed raises :class:`KeyDestroyed` (also when the shred came from another process
        and landed just before this write: it is then re-asserted).
        """
        self._check_usable()
        key_id = record["key_id"]
        if record["destroyed"]:
            record = _as_destroyed(record)
        elif self._seen_destroyed(key_id):
            raise KeyDestroyed(f"key {key_id} was destroyed; it cannot be revived")
        await self._put(key_id, dict(record))
        if not record["destroyed"] and key_id in self._destroyed:
            current = self._view.get(key_id)
            if current is not None and not current["destroyed"]:
                log.warning("key_shred_reasserted", key_id=key_id)
                await self._put(key_id, dict(_as_destroyed(current)))
            raise KeyDestroyed(f"key {key_id} was destroyed while it was being written")

    async def records(self) -> list[KeyRecord]:
        self._check_usable()
        return self._read_many(self._view.keys())

    async def by_call(self, workspace_id: str, call_id: str) -> list[KeyRecord]:
        self._check_usable()
        return self._read_many(self._by_call.get((workspace_id, call_id), {}))

    async def by_workspace(
        self, workspace_id: str, *, scope: KeyScope | None = None
    ) -> list[KeyRecord]:
        self._check_usable()
        found = self._read_many(self._by_workspace.get(workspace_id, {}))
        return [r for r in found if scope is None or r["scope"] == scope]

    def __repr__(self) -> str:
        return f"KafkaKeyStore(topic={self._view.topic!r}, records={len(self._owner)})"

    # -- internals

    def _check_usable(self) -> None:
        if self._producer is None:
            raise RuntimeError("KafkaKeyStore used before start() / outside 'async with'")
        failure = self._view.failure
        if failure is not None:
            raise KafkaUnavailable(f"the key view of {self._view.topic} stopped: {failure}")

    def _seen_destroyed(self, key_id: str) -> bool:
        return key_id in self._destroyed

    def _read(self, key_id: str) -> KeyRecord | None:
        record = self._view.get(key_id)
        if record is None:
            return None
        if key_id in self._destroyed and not record["destroyed"]:
            return _as_destroyed(record)  # destroyed is final, whatever was written after
        return record.copy()

    def _read_many(self, key_ids: Iterable[str]) -> list[KeyRecord]:
        return [r for r in map(self._read, list(key_ids)) if r is not None]

    def _apply(self, key_id: str, record: KeyRecord | None) -> None:
        """The view's change hook: keep the indexes current, tell listeners about shreds."""
        old = self._owner.pop(key_id, None)
        if old is not None:
            self._unindex(key_id, *old)
        if record is None:  # a tombstone: the key is gone altogether
            if self._listeners:
                self._notify([key_id])
            return
        workspace_id, call_id = record["workspace_id"], record["call_id"]
        self._owner[key_id] = (workspace_id, call_id)
        if workspace_id is not None:
            self._by_workspace.setdefault(workspace_id, {})[key_id] = None
            if call_id is not None:
                self._by_call.setdefault((workspace_id, call_id), {})[key_id] = None
        if record["destroyed"]:
            self._destroyed.add(key_id)
        if key_id in self._destroyed and self._listeners:
            gone = [key_id]
            if record["scope"] == "WORKSPACE" and workspace_id is not None:
                gone += self._wrapped_under(workspace_id, key_id)
            self._notify(gone)

    def _wrapped_under(self, workspace_id: str, parent_id: str) -> list[str]:
        """Call keys of the workspace still wrapped under ``parent_id`` (now unrecoverable)."""
        out = []
        for key_id in self._by_workspace.get(workspace_id, {}):
            record = self._view.get(key_id)
            if record is not None and record["wrapping_key_id"] == parent_id:
                out.append(key_id)
        return out

    def _unindex(self, key_id: str, workspace_id: str | None, call_id: str | None) -> None:
        if workspace_id is None:
            return
        ids = self._by_workspace.get(workspace_id)
        if ids is not None:
            ids.pop(key_id, None)
            if not ids:
                del self._by_workspace[workspace_id]
        if call_id is not None:
            ids = self._by_call.get((workspace_id, call_id))
            if ids is not None:
                ids.pop(key_id, None)
                if not ids:
                    del self._by_call[(workspace_id, call_id)]

    def _notify(self, key_ids: Sequence[str]) -> None:
        """Every listener hears every key; the first failure is re-raised (stopping the view)."""
        failure: Exception | None = None
        for listener in list(self._listeners):
            for key_id in key_ids:
                try:
                    listener(key_id)
                except Exception as exc:
                    log.error("key_listener_failed", key_id=key_id, error=repr(exc))
                    failure = failure or exc
        if failure is not None:
            raise failure


# --------------------------------------------------------------------------------------------
# Opening a key ring


@dataclass(frozen=True)
class Keys:
    """A process's key machinery: the store (for ``sync``), the ring, the master key provider."""

    store: KafkaKeyStore
    ring: KeyRing
    provider: MasterKeyProvider


@contextlib.asynccontextmanager
async def open_keys(
    settings: Settings, *, provider: MasterKeyProvider | None = None, cache_size: int = 10_000
) -> AsyncIterator[Keys]:
    """Start a :class:`KafkaKeyStore`, build the ring on it, subscribe ``ring.forget``."""
    if provider is None:
        provider = await asyncio.to_thread(build_provider, settings)
    async with KafkaKeyStore(settings) as store:
        ring = KeyRing(store, provider, cache_size=cache_size)
        unsubscribe = store.subscribe(ring.forget)
        try:
            yield Keys(store, ring, provider)
        finally:
            unsubscribe()


@contextlib.asynccontextmanager
async def open_keyring(
    settings: Settings, *, provider: MasterKeyProvider | None = None, cache_size: int = 10_000
) -> AsyncIterator[KeyRing]:
    """A :class:`KeyRing` on ``control.keys`` that forgets shredded keys as they are shredded."""
    async with open_keys(settings, provider=provider, cache_size=cache_size) as keys:
        yield keys.ring


# --------------------------------------------------------------------------------------------
# Audited key operations


@dataclass(frozen=True)
class ShredResult:
    workspace_id: str
    call_id: str | None
    destroyed_key_ids: tuple[str, ...]
    #: Set when there was no key to destroy: the destroyed marker that blocks future keys.
    marker_key_id: str | None = None

    @property
    def already_shredded(self) -> bool:
        return not self.destroyed_key_ids and self.marker_key_id is None

    def to_json(self) -> dict[str, Any]:
        return {
            "workspace_id": self.workspace_id,
            "call_id": self.call_id,
            "destroyed_key_ids": list(self.destroyed_key_ids),
            "marker_key_id": self.marker_key_id,
            "already_shredded": self.already_shredded,
        }


@dataclass(frozen=True)
class MasterRotation:
    provider: str
    previous_master_key_id: str
    master_key_id: str
    rewrapped_key_ids: tuple[str, ...]
    retired_master_key_ids: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "previous_master_key_id": self.previous_master_key_id,
            "master_key_id": self.master_key_id,
            "rewrapped_key_ids": list(self.rewrapped_key_ids),
            "retired_master_key_ids": list(self.retired_master_key_ids),
        }


def rotation_json(rotation: WorkspaceRotation) -> dict[str, Any]:
    return {
        "workspace_id": rotation.workspace_id,
        "new_key_id": rotation.new_key_id,
        "retired_key_ids": list(rotation.retired_key_ids),
        "rewrapped_call_key_ids": list(rotation.rewrapped_call_key_ids),
    }


class KeyAdmin:
    """Operator key operations (``callvault keys``), each one written to ``audit.events``.

    Audit details name key ids and counts, never key material; long id lists are split over
    several events (``part`` = "i/n") so each stays far below Kafka's message size limit. A
    refused or failed operation is audited with outcome FAILURE and re-raised.
    """

    AUDIT_IDS_PER_EVENT = 200

    def __init__(
        self,
        settings: Settings,
        keys: Keys,
        *,
        actor: str | None = None,
        actor_kind: ActorKind = "USER",
    ) -> None:
        self._settings = settings
        self._keys = keys
        self._actor = actor or cli_actor()
        self._actor_kind: ActorKind = actor_kind
        self._regions: dict[str, str | None] = {}

    async def rotate_workspace(self, workspace_id: str) -> WorkspaceRotation:
        """New workspace key; call keys re-wrapped under it (no data re-encrypted)."""
        action, target = "key.workspace.rotate", f"workspace:{workspace_id}"
        store = self._keys.store
        async with self._failures_audited(action, workspace_id, target):
            await store.sync()
            if not await store.by_workspace(workspace_id, scope="WORKSPACE"):
                raise ControlError(
                    f"workspace {workspace_id!r} has no workspace key yet: nothing to rotate"
                )
            rotation = await self._keys.ring.rotate_workspace_key(workspace_id)
        await self._audit(
            action,
            workspace_id,
            target,
            {
                "new_key_id": rotation.new_key_id,
                "retired_key_ids": ",".join(rotation.retired_key_ids),
            },
            ids_field="rewrapped_key_ids",
            key_ids=rotation.rewrapped_call_key_ids,
        )
        return rotation

    async def shred_call(self, workspace_id: str, call_id: str) -> ShredResult:
        """Destroy every key of one call: its data becomes unrecoverable everywhere."""
        ring, store = self._keys.ring, self._keys.store
        return await self._shred(
            "key.call.shred", f"call:{call_id}", workspace_id, call_id,
            shred=lambda: ring.shred_call(workspace_id, call_id),
            remaining=lambda: store.by_call(workspace_id, call_id),
        )  # fmt: skip

    async def shred_workspace(self, workspace_id: str) -> ShredResult:
        """Destroy the workspace keys and every call key: the whole workspace is unrecoverable."""
        ring, store = self._keys.ring, self._keys.store
        return await self._shred(
            "key.workspace.shred", f"workspace:{workspace_id}", workspace_id, None,
            shred=lambda: ring.shred_workspace(workspace_id),
            remaining=lambda: store.by_workspace(workspace_id, scope="WORKSPACE"),
        )  # fmt: skip

    async def _shred(
        self,
        action: str,
        target: str,
        workspace_id: str,
        call_id: str | None,
        *,
        shred: Callable[[], Awaitable[list[str]]],
        remaining: Callable[[], Awaitable[list[KeyRecord]]],
    ) -> ShredResult:
        """Shred, sync, shred again (a key another process created meanwhile goes too); with
        no key at all, leave a destroyed marker so data arriving later gets no fresh key."""
        store = self._keys.store
        async with self._failures_audited(action, workspace_id, target):
            await store.sync()
            destroyed = await shred()
            await store.sync()
            destroyed += await shred()
            marker = None
            if not await remaining():
                scope: KeyScope = "CALL" if call_id is not None else "WORKSPACE"
                marker = await self._write_marker(scope, workspace_id, call_id)
        result = ShredResult(workspace_id, call_id, tuple(destroyed), marker)
        await self._audit(
            action,
            workspace_id,
            target,
            {"marker_key_id": marker or "", "already_shredded": str(result.already_shredded)},
            ids_field="destroyed_key_ids",
            key_ids=result.destroyed_key_ids,
        )
        return result

    async def rotate_master(self, *, retire_old: bool = False) -> MasterRotation:
        """Move every live workspace key under a new master key version.

        Local key file: add a version, re-wrap, and with ``retire_old`` delete the older versions
        (refused while a live workspace key is still wrapped under one). AWS KMS: re-wrap keys
        wrapped under another KMS key to the configured ``keys.kms_key_id`` (KMS's own yearly
        rotation needs no re-wrap); retiring a KMS key is done in KMS.
        """
        provider, store, ring = self._keys.provider, self._keys.store, self._keys.ring
        local = isinstance(provider, LocalKeyFileProvider)
        kind = "local" if local else "aws-kms"
        action = "key.master.rotate"
        async with self._failures_audited(action, None, "master"):
            if retire_old and not local:
                raise ControlError(
                    "--retire-old works with the local key file only; with AWS KMS, schedule the "
                    "old KMS key's deletion in KMS once nothing is wrapped under it"
                )
            previous = await asyncio.to_thread(lambda: provider.key_id)
            current = (
                await asyncio.to_thread(provider.rotate)
                if isinstance(provider, LocalKeyFileProvider)
                else previous
            )
            await store.sync()
            rewrapped = await ring.rewrap_workspace_keys_for_master()
        await self._audit(
            action,
            None,
            f"master:{current}",
            {"provider": kind, "previous_master_key_id": previous, "master_key_id": current},
            ids_field="rewrapped_key_ids",
            key_ids=rewrapped,
        )
        retired: tuple[str, ...] = ()
        if retire_old and isinstance(provider, LocalKeyFileProvider):
            async with self._failures_audited("key.master.retire", None, "master"):
                retired = await self._retire_old_masters(provider)
            for master_id in retired:
                await self._audit("key.master.retire", None, f"master:{master_id}", {})
        return MasterRotation(kind, previous, current, tuple(rewrapped), retired)

    # -- internals

    async def _retire_old_masters(self, provider: LocalKeyFileProvider) -> tuple[str, ...]:
        store = self._keys.store
        await store.sync()
        current = provider.key_id
        old = [m for m in provider.master_key_ids if m != current]
        in_use = {
            r["wrapping_key_id"]
            for r in await store.records()
            if r["scope"] == "WORKSPACE" and not r["destroyed"]
        }
        blocked = sorted(set(old) & in_use)
        if blocked:
            raise ControlError(
                f"master key version(s) {', '.join(blocked)} still wrap live workspace keys "
                "(created by another process during the rotation?); nothing was retired. Run "
                "`callvault keys rotate-master --retire-old` again"
            )
        for master_id in old:
            await asyncio.to_thread(provider.retire, master_id)
        return tuple(old)

    async def _write_marker(self, scope: KeyScope, workspace_id: str, call_id: str | None) -> str:
        prefix = "ck" if scope == "CALL" else "wk"
        key_id = f"{prefix}-{secrets.token_hex(16)}"
        await self._keys.store.put(
            {
                "key_id": key_id,
                "scope": scope,
                "workspace_id": workspace_id,
                "call_id": call_id,
                "wrapped_key": b"",
                "wrapping_key_id": "",
                "algorithm": ALGORITHM,
                "created_at": datetime.now(UTC),
                "destroyed": True,
                "call_started_at": None,
            }
        )
        return key_id

    @contextlib.asynccontextmanager
    async def _failures_audited(
        self, action: str, workspace_id: str | None, target: str
    ) -> AsyncIterator[None]:
        try:
            yield
        except CallvaultError as exc:
            with contextlib.suppress(Exception):  # Kafka may be why it failed; report the cause
                await self._audit(
                    action,
                    workspace_id,
                    target,
                    {"error": type(exc).__name__, "reason": str(exc)[:500]},
                    outcome="FAILURE",
                )
            raise

    async def _audit(
        self,
        action: str,
        workspace_id: str | None,
        target: str,
        details: dict[str, str],
        *,
        ids_field: str = "key_ids",
        key_ids: Sequence[str] = (),
        outcome: Outcome = "SUCCESS",
    ) -> None:
        region = await self._region(workspace_id) if workspace_id else None
        step = self.AUDIT_IDS_PER_EVENT
        chunks = [key_ids[i : i + step] for i in range(0, len(key_ids), step)] or [()]
        audit = AuditLog(self._settings, self._keys.store.producer)
        for n, chunk in enumerate(chunks, 1):
            extra: dict[str, str] = {}
            if outcome == "SUCCESS":
                extra[f"{ids_field.removesuffix('_ids')}_count"] = str(len(key_ids))
                extra[ids_field] = ",".join(chunk)
            if len(chunks) > 1:
                extra["part"] = f"{n}/{len(chunks)}"
            await audit.record(
                audit_event(
                    action,
                    actor_kind=self._actor_kind,
                    actor_id=self._actor,
                    outcome=outcome,
                    workspace_id=workspace_id,
                    region=region,
                    target=target,
                    details={**details, **extra},
                )
            )

    async def _region(self, workspace_id: str) -> str | None:
        """The workspace's home region for the audit event (None if it is unknown/deleted)."""
        if workspace_id not in self._regions:
            view = workspace_view(self._settings)
            try:
                await view.start()
            except KafkaUnavailable:
                return None
            try:
                policy = view.get(workspace_id)
            finally:
                await view.stop()
            self._regions[workspace_id] = policy.region if policy is not None else None
        return self._regions[workspace_id]
