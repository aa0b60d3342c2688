"""The key hierarchy master -> workspace key -> per-call data key, over an abstract key store.

Records are shaped exactly like ``schemas/KeyRecord.avsc`` (topic ``control.keys``, compacted,
keyed by ``key_id``). A workspace key is wrapped by the master key provider; a call key is wrapped
under its workspace key with AES-256-GCM, the AAD binding ``(key_id, scope, workspace_id,
call_id)`` so a wrapped key moved onto another record fails to unwrap.

Decisions, and why:

* **Random key ids** (``wk-<hex>``, ``ck-<hex>``), not derived from the call id. Two processors
  racing to create a key for the same call just yield two valid call keys — every ciphertext names
  its key id — so no cross-process coordination is needed. Readers pick the newest live one.
  Likewise a workspace may briefly have two live workspace keys; the newest is the active one.
* **Destroy = a record with ``destroyed=True`` and empty ``wrapped_key``**, not a Kafka
  tombstone: compaction removes the old wrapped bytes (which is what shreds the data, including
  every copy in Kafka history, S3 and replays) while the fact of shredding — key id, and the Kafka
  timestamp saying when — stays auditable. Destroyed is final: a call or workspace with a
  destroyed key is treated as shredded, and the ring refuses to mint a new key for it, so late
  data cannot quietly undo an erasure.
* **Rotating a workspace key re-wraps call keys, never data**: call keys (and so every
  ciphertext) stay the same; only their wrapped form and ``wrapping_key_id`` change.

Concurrency. Within one process, per-call and per-workspace ``asyncio`` locks serialise key
creation, shredding and rotation. Across processes the store is last-writer-wins per key id, so
two *management* operations on one workspace (rotation, master re-wrap, shredding) must not run
at the same time in different processes — route them through one operator command or one
partition owner. Key *creation* in other processes is safe against rotation: the rotation sweeps
call keys before and after destroying the old workspace key, and a creator re-wraps its new key
if its workspace key stopped being the active one while it was writing.

Holders cache unwrapped keys (bounded LRU); a live view of the key topic calls :meth:`KeyRing.
forget` when it sees a destroyed record, so other processes drop their copies within seconds.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal, NotRequired, Protocol, TypedDict
from weakref import WeakValueDictionary

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from callvault.crypto.envelope import (
    KEY_SIZE,
    NONCE_SIZE,
    Aad,
    canonical_fields,
    peek_key_id,
    seal,
    unseal,
)
from callvault.crypto.errors import (
    DecryptionFailed,
    KeyDestroyed,
    KeyNotFound,
    KeyScopeMismatch,
)
from callvault.crypto.providers import MasterKeyProvider

__all__ = [
    "ALGORITHM",
    "InMemoryKeyStore",
    "KeyRecord",
    "KeyRing",
    "KeyScope",
    "KeyStore",
    "WorkspaceRotation",
    "open_artifact",
    "seal_artifact",
]

ALGORITHM: Final = "AES-256-GCM"
KeyScope = Literal["MASTER", "WORKSPACE", "CALL"]


class KeyRecord(TypedDict):
    """One value of ``control.keys``; field for field ``schemas/KeyRecord.avsc``."""

    key_id: str
    scope: KeyScope
    workspace_id: str | None
    call_id: str | None
    wrapped_key: bytes
    wrapping_key_id: str
    algorithm: str
    created_at: datetime
    destroyed: bool
    call_started_at: NotRequired[datetime | None]


class KeyStore(Protocol):
    """Where key records live. The Kafka-backed store is a compacted-topic view plus a producer.

    ``put`` is durable when it returns and replaces the record of the same ``key_id``. A store
    must never let a live record replace a destroyed one (destroyed is final). The lookups return
    snapshots (lists the caller may keep), including destroyed records.
    """

    async def get(self, key_id: str) -> KeyRecord | None: ...

    async def put(self, record: KeyRecord) -> None: ...

    async def records(self) -> list[KeyRecord]: ...

    async def by_call(self, workspace_id: str, call_id: str) -> list[KeyRecord]: ...

    async def by_workspace(
        self, workspace_id: str, *, scope: KeyScope | None = None
    ) -> list[KeyRecord]: ...


class InMemoryKeyStore:
    """A :class:`KeyStore` in a dict: for tests and offline tools. Not shared between processes."""

    def __init__(self, records: Iterable[KeyRecord] = ()) -> None:
        self._records: dict[str, KeyRecord] = {}
        self._by_workspace: dict[str, dict[str, None]] = {}
        self._by_call: dict[tuple[str, str], dict[str, None]] = {}
        for record in records:
            self._store(record)

    async def get(self, key_id: str) -> KeyRecord | None:
        record = self._records.get(key_id)
        return None if record is None else record.copy()

    async def put(self, record: KeyRecord) -> None:
        known = self._records.get(record["key_id"])
        if known is not None and known["destroyed"] and not record["destroyed"]:
            raise KeyDestroyed(f"key {record['key_id']} was destroyed; it cannot be revived")
        self._store(record)

    async def records(self) -> list[KeyRecord]:
        return [r.copy() for r in self._records.values()]

    async def by_call(self, workspace_id: str, call_id: str) -> list[KeyRecord]:
        ids = self._by_call.get((workspace_id, call_id), {})
        return [self._records[i].copy() for i in ids]

    async def by_workspace(
        self, workspace_id: str, *, scope: KeyScope | None = None
    ) -> list[KeyRecord]:
        ids = self._by_workspace.get(workspace_id, {})
        found = (self._records[i] for i in ids)
        return [r.copy() for r in found if scope is None or r["scope"] == scope]

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"InMemoryKeyStore(records={len(self._records)})"

    def _store(self, record: KeyRecord) -> None:
        key_id, ws, call = record["key_id"], record["workspace_id"], record["call_id"]
        self._records[key_id] = record.copy()
        if ws is not None:
            self._by_workspace.setdefault(ws, {})[key_id] = None
            if call is not None:
                self._by_call.setdefault((ws, call), {})[key_id] = None


@dataclass(frozen=True, slots=True)
class WorkspaceRotation:
    """What :meth:`KeyRing.rotate_workspace_key` changed, for the audit event."""

    workspace_id: str
    new_key_id: str
    retired_key_ids: tuple[str, ...]
    rewrapped_call_key_ids: tuple[str, ...]


_Owner = tuple[KeyScope, str | None, str | None]
"""(scope, workspace_id, call_id) of a key: what a reader checks before using it."""


@dataclass(frozen=True, slots=True)
class _Cached:
    key: bytes = field(repr=False)
    scope: KeyScope
    workspace_id: str | None
    call_id: str | None

    @property
    def owner(self) -> _Owner:
        return self.scope, self.workspace_id, self.call_id


class KeyRing:
    """Gets, creates, unwraps, shreds and rotates keys; caches unwrapped keys in a bounded LRU.

    The provider is synchronous (it may block on KMS), so every provider call runs in a thread.
    """

    def __init__(
        self, store: KeyStore, provider: MasterKeyProvider, *, cache_size: int = 10_000
    ) -> None:
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        self._store = store
        self._provider = provider
        self._cache_size = cache_size
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._active_ws: dict[str, str] = {}
        self._locks: WeakValueDictionary[tuple[str, ...], asyncio.Lock] = WeakValueDictionary()

    # -- the data path

    async def call_key(
        self, workspace_id: str, call_id: str, *, call_started_at: datetime | None = None
    ) -> tuple[str, bytes]:
        """The key to encrypt a call's artifacts with, created on first use.

        ``call_started_at`` is recorded on a new key so retention can shred it on time.
        Raises :class:`KeyDestroyed` for a call or workspace that was shredded.
        """
        async with self._lock("call", workspace_id, call_id):
            records = [
                r for r in await self._store.by_call(workspace_id, call_id) if r["scope"] == "CALL"
            ]
            if any(r["destroyed"] for r in records):
                raise KeyDestroyed(f"call {call_id} of workspace {workspace_id} was shredded")
            if records:
                key_id = _newest(records)["key_id"]
                return key_id, await self.key_for(
                    key_id, workspace_id=workspace_id, call_id=call_id
                )
            return await self._create_call_key(workspace_id, call_id, call_started_at)

    async def key_for(self, key_id: str, *, workspace_id: str, call_id: str) -> bytes:
        """The call key ``key_id`` to decrypt with, if it belongs to this workspace and call.

        ``workspace_id``/``call_id`` come from the reader's record, so a blob naming another
        call's key is refused (:class:`KeyScopeMismatch`) even before authentication fails.
        """
        want: _Owner = ("CALL", workspace_id, call_id)
        cached = self._cache_get(key_id)
        if cached is None:
            record = await self._live_record(key_id)
            _check_owner(key_id, _owner(record), want)
            parent = await self._workspace_key(record["wrapping_key_id"], workspace_id)
            cached = _Cached(_unwrap_call_key(parent, record), *want)
            self._cache_put(key_id, cached)
        _check_owner(key_id, cached.owner, want)
        return cached.key

    # -- shredding

    async def shred_call(self, workspace_id: str, call_id: str) -> list[str]:
        """Destroy every key of the call; returns the ids destroyed by this call."""
        async with self._lock("call", workspace_id, call_id):
            destroyed = []
            for record in await self._store.by_call(workspace_id, call_id):
                if record["scope"] == "CALL" and not record["destroyed"]:
                    await self._store.put(_destroyed(record))
                    destroyed.append(record["key_id"])
                self.forget(record["key_id"])
            return destroyed

    async def shred_workspace(self, workspace_id: str) -> list[str]:
        """Destroy every workspace and call key of the workspace; returns the ids destroyed now.

        Workspace keys go first: once they are gone every call key below them is unrecoverable,
        so a crash half-way still leaves the workspace shredded.
        """
        async with self._lock("ws", workspace_id):
            self._active_ws.pop(workspace_id, None)
            records = await self._store.by_workspace(workspace_id)
            records.sort(key=lambda r: r["scope"] != "WORKSPACE")
            destroyed = []
            for record in records:
                if record["scope"] in ("WORKSPACE", "CALL") and not record["destroyed"]:
                    await self._store.put(_destroyed(record))
                    destroyed.append(record["key_id"])
                self.forget(record["key_id"])
            return destroyed

    # -- rotation

    async def rotate_workspace_key(self, workspace_id: str) -> WorkspaceRotation:
        """New workspace key; re-wrap every live call key under it; destroy the old one(s).

        No artifact is re-encrypted: call keys keep their bytes and ids.
        """
        async with self._lock("ws", workspace_id):
            records = await self._store.by_workspace(workspace_id, scope="WORKSPACE")
            old = [r for r in records if not r["destroyed"]]
            if records and not old:
                raise KeyDestroyed(f"workspace {workspace_id} was shredded")
            old_keys = {
                r["key_id"]: await self._workspace_key(r["key_id"], workspace_id) for r in old
            }
            new_id, new_key = await self._create_workspace_key(workspace_id)
            self._active_ws[workspace_id] = new_id
            rewrapped = await self._rewrap_call_keys(workspace_id, old_keys, new_id, new_key)
            for record in old:
                await self._store.put(_destroyed(record))
                self.forget(record["key_id"])
            # Keys another process created under an old workspace key while we were sweeping.
            rewrapped += await self._rewrap_call_keys(workspace_id, old_keys, new_id, new_key)
            return WorkspaceRotation(workspace_id, new_id, tuple(old_keys), tuple(rewrapped))

    async def rewrap_workspace_keys_for_master(self) -> list[str]:
        """After the provider's master key rotated: move every live workspace key under it.

        Returns the re-wrapped workspace key ids; the old master version can be retired after.
        """
        done = []
        for record in await self._store.records():
            if record["scope"] != "WORKSPACE" or record["destroyed"]:
                continue
            if await asyncio.to_thread(self._provider.is_current, record["wrapping_key_id"]):
                continue
            workspace_id = _required(record, "workspace_id")
            async with self._lock("ws", workspace_id):
                fresh = await self._store.get(record["key_id"])
                if fresh is None or fresh["destroyed"]:
                    continue
                context = _workspace_context(workspace_id, fresh["key_id"])
                wrapped, master_id = await asyncio.to_thread(
                    self._provider.rewrap, fresh["wrapped_key"], fresh["wrapping_key_id"], context
                )
                await self._store.put(
                    {**fresh, "wrapped_key": wrapped, "wrapping_key_id": master_id}
                )
                done.append(fresh["key_id"])
        return done

    # -- cache

    def forget(self, key_id: str) -> None:
        """Drop a cached key (the key view calls this when it sees the key destroyed)."""
        self._cache.pop(key_id, None)
        for workspace_id, active in list(self._active_ws.items()):
            if active == key_id:
                del self._active_ws[workspace_id]

    def is_cached(self, key_id: str) -> bool:
        return key_id in self._cache

    def __repr__(self) -> str:
        return (
            f"KeyRing(store={type(self._store).__name__}, provider={self._provider!r}, "
            f"cached={len(self._cache)})"
        )

    # -- internals

    def _lock(self, *name: str) -> asyncio.Lock:
        """A lock per name, alive while anyone holds or awaits it (then garbage-collected)."""
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    def _cache_get(self, key_id: str) -> _Cached | None:
        entry = self._cache.get(key_id)
        if entry is not None:
            self._cache.move_to_end(key_id)
        return entry

    def _cache_put(self, key_id: str, entry: _Cached) -> None:
        self._cache[key_id] = entry
        self._cache.move_to_end(key_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def _live_record(self, key_id: str) -> KeyRecord:
        record = await self._store.get(key_id)
        if record is None:
            raise KeyNotFound(f"no key record {key_id}")
        if record["destroyed"]:
            raise KeyDestroyed(f"key {key_id} was destroyed; data under it is unrecoverable")
        return record

    async def _workspace_key(self, key_id: str, workspace_id: str) -> bytes:
        want: _Owner = ("WORKSPACE", workspace_id, None)
        cached = self._cache_get(key_id)
        if cached is None:
            async with self._lock("unwrap", key_id):  # one provider round trip per key
                cached = self._cache_get(key_id)
                if cached is None:
                    record = await self._live_record(key_id)
                    _check_owner(key_id, _owner(record), want)
                    key = await asyncio.to_thread(
                        self._provider.unwrap,
                        record["wrapped_key"],
                        record["wrapping_key_id"],
                        _workspace_context(workspace_id, key_id),
                    )
                    cached = _Cached(key, *want)
                    self._cache_put(key_id, cached)
        _check_owner(key_id, cached.owner, want)
        return cached.key

    async def _active_workspace_key(self, workspace_id: str) -> tuple[str, bytes]:
        active = self._active_ws.get(workspace_id)
        if active is not None:
            try:
                return active, await self._workspace_key(active, workspace_id)
            except KeyDestroyed:
                self.forget(active)
        async with self._lock("ws", workspace_id):
            records = await self._store.by_workspace(workspace_id, scope="WORKSPACE")
            live = [r for r in records if not r["destroyed"]]
            if live:
                key_id = _newest(live)["key_id"]
                key = await self._workspace_key(key_id, workspace_id)
            elif records:
                raise KeyDestroyed(f"workspace {workspace_id} was shredded")
            else:
                key_id, key = await self._create_workspace_key(workspace_id)
            self._active_ws[workspace_id] = key_id
            return key_id, key

    async def _create_workspace_key(self, workspace_id: str) -> tuple[str, bytes]:
        key_id = f"wk-{secrets.token_hex(16)}"
        plaintext, wrapped, master_id = await asyncio.to_thread(
            self._provider.generate_data_key, _workspace_context(workspace_id, key_id)
        )
        record: KeyRecord = {
            "key_id": key_id,
            "scope": "WORKSPACE",
            "workspace_id": workspace_id,
            "call_id": None,
            "wrapped_key": wrapped,
            "wrapping_key_id": master_id,
            "algorithm": ALGORITHM,
            "created_at": _now(),
            "destroyed": False,
            "call_started_at": None,
        }
        await self._store.put(record)
        self._cache_put(key_id, _Cached(plaintext, "WORKSPACE", workspace_id, None))
        return key_id, plaintext

    async def _create_call_key(
        self, workspace_id: str, call_id: str, call_started_at: datetime | None
    ) -> tuple[str, bytes]:
        key_id, key, created_at = f"ck-{secrets.token_hex(16)}", os.urandom(KEY_SIZE), _now()
        while True:
            parent_id, parent = await self._active_workspace_key(workspace_id)
            record: KeyRecord = {
                "key_id": key_id,
                "scope": "CALL",
                "workspace_id": workspace_id,
                "call_id": call_id,
                "wrapped_key": _wrap_call_key(parent, key, key_id, workspace_id, call_id),
                "wrapping_key_id": parent_id,
                "algorithm": ALGORITHM,
                "created_at": created_at,
                "destroyed": False,
                "call_started_at": call_started_at,
            }
            await self._store.put(record)
            # A rotation that started while we wrote may have swept before our record was
            # visible: then wrap again under the key that replaced ours.
            if self._active_ws.get(workspace_id) == parent_id:
                break
        self._cache_put(key_id, _Cached(key, "CALL", workspace_id, call_id))
        return key_id, key

    async def _rewrap_call_keys(
        self, workspace_id: str, old_keys: dict[str, bytes], new_id: str, new_key: bytes
    ) -> list[str]:
        done = []
        for listed in await self._store.by_workspace(workspace_id, scope="CALL"):
            if listed["destroyed"] or listed["wrapping_key_id"] not in old_keys:
                continue
            record = await self._store.get(listed["key_id"])  # shredded or moved meanwhile?
            if record is None or record["destroyed"]:
                continue
            parent = old_keys.get(record["wrapping_key_id"])
            if parent is None:
                continue
            key = _unwrap_call_key(parent, record)
            call_id = _required(record, "call_id")
            wrapped = _wrap_call_key(new_key, key, record["key_id"], workspace_id, call_id)
            await self._store.put({**record, "wrapped_key": wrapped, "wrapping_key_id": new_id})
            done.append(record["key_id"])
        return done


# --------------------------------------------------------------------------------------------
# Artifacts


async def seal_artifact(ring: KeyRing, plaintext: bytes, aad: Aad) -> bytes:
    """Encrypt one artifact under its call's key (created on first use)."""
    key_id, key = await ring.call_key(aad.workspace_id, aad.call_id)
    return seal(key, key_id, plaintext, aad)


async def open_artifact(ring: KeyRing, blob: bytes, aad: Aad) -> bytes:
    """Decrypt one artifact; ``aad`` comes from the reader's record, never from the blob."""
    key_id = peek_key_id(blob)
    key = await ring.key_for(key_id, workspace_id=aad.workspace_id, call_id=aad.call_id)
    return unseal(key, blob, aad)


# --------------------------------------------------------------------------------------------
# Helpers


def _now() -> datetime:
    return datetime.now(UTC)


def _newest(records: list[KeyRecord]) -> KeyRecord:
    return max(records, key=lambda r: (r["created_at"], r["key_id"]))


def _destroyed(record: KeyRecord) -> KeyRecord:
    return {**record, "wrapped_key": b"", "destroyed": True}


def _required(record: KeyRecord, name: Literal["workspace_id", "call_id"]) -> str:
    value = record[name]
    if not value:
        raise DecryptionFailed(f"key record {record['key_id']} has no {name}")
    return value


def _workspace_context(workspace_id: str, key_id: str) -> dict[str, str]:
    return {"callvault:workspace": workspace_id, "callvault:key_id": key_id}


def _owner(record: KeyRecord) -> _Owner:
    return record["scope"], record["workspace_id"], record["call_id"]


def _check_owner(key_id: str, have: _Owner, want: _Owner) -> None:
    """Refuse a key whose record is of another scope, workspace or call than the reader's."""
    if have != want:
        scope, workspace_id, call_id = want
        where = f"call {call_id} of " if call_id is not None else ""
        raise KeyScopeMismatch(
            f"key {key_id} is not a {scope} key of {where}workspace {workspace_id}"
        )


def _call_key_aad(key_id: str, workspace_id: str, call_id: str) -> bytes:
    return canonical_fields("callvault-call-key-v1", key_id, "CALL", workspace_id, call_id)


def _wrap_call_key(
    parent: bytes, key: bytes, key_id: str, workspace_id: str, call_id: str
) -> bytes:
    nonce = os.urandom(NONCE_SIZE)
    return nonce + AESGCM(parent).encrypt(nonce, key, _call_key_aad(key_id, workspace_id, call_id))


def _unwrap_call_key(parent: bytes, record: KeyRecord) -> bytes:
    workspace_id, call_id = _required(record, "workspace_id"), _required(record, "call_id")
    wrapped = record["wrapped_key"]
    aad = _call_key_aad(record["key_id"], workspace_id, call_id)
    try:
        key = AESGCM(parent).decrypt(wrapped[:NONCE_SIZE], wrapped[NONCE_SIZE:], aad)
    except (InvalidTag, ValueError):
        key = b""
    if len(key) != KEY_SIZE:
        raise DecryptionFailed(f"wrapped key of {record['key_id']} could not be authenticated")
    return key
