"""The key hierarchy: get-or-create, shredding, rotation without re-encryption, caching."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from callvault.crypto.envelope import Aad, peek_key_id
from callvault.crypto.errors import (
    DecryptionFailed,
    KeyDestroyed,
    KeyNotFound,
    KeyScopeMismatch,
)
from callvault.crypto.keyring import (
    InMemoryKeyStore,
    KeyRecord,
    KeyRing,
    open_artifact,
    seal_artifact,
)
from callvault.crypto.providers import LocalKeyFileProvider
from schemas.codec import get_codec


class CountingProvider:
    """Forwards to a real provider and counts calls (each one would be a KMS round trip)."""

    def __init__(self, inner: LocalKeyFileProvider) -> None:
        self.inner = inner
        self.calls: list[str] = []

    @property
    def key_id(self) -> str:
        return self.inner.key_id

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(*args: Any) -> Any:
            self.calls.append(name)
            return method(*args)

        return call


@pytest.fixture
def provider(tmp_path) -> LocalKeyFileProvider:
    return LocalKeyFileProvider.create_if_missing(tmp_path / "master.json")


@pytest.fixture
def store() -> InMemoryKeyStore:
    return InMemoryKeyStore()


@pytest.fixture
def ring(store, provider) -> KeyRing:
    return KeyRing(store, provider)


def aad(call: str = "call-1", ws: str = "ws-1", kind: str = "transcript") -> Aad:
    return Aad(workspace_id=ws, call_id=call, kind=kind, region="eu")


async def test_round_trip_and_records_match_the_schema(ring, store):
    blob = await seal_artifact(ring, b"hello", aad())
    assert await open_artifact(ring, blob, aad()) == b"hello"
    records = await store.records()
    assert sorted(r["scope"] for r in records) == ["CALL", "WORKSPACE"]
    codec = get_codec()
    for record in records:
        assert codec.decode("KeyRecord", codec.encode("KeyRecord", record)) == record
        assert record["created_at"].utcoffset() is not None
    call = next(r for r in records if r["scope"] == "CALL")
    wk = next(r for r in records if r["scope"] == "WORKSPACE")
    assert peek_key_id(blob) == call["key_id"]
    assert call["key_id"].startswith("ck-") and wk["key_id"].startswith("wk-")
    assert call["wrapping_key_id"] == wk["key_id"]
    assert wk["wrapping_key_id"] == ring._provider.key_id
    assert "call-1" not in call["key_id"]


async def test_fresh_ring_reads_what_another_wrote(ring, store, provider):
    blob = await seal_artifact(ring, b"x", aad())
    assert await open_artifact(KeyRing(store, provider), blob, aad()) == b"x"


async def test_one_key_per_call_per_process(ring, store):
    results = await asyncio.gather(*(ring.call_key("ws-1", "call-1") for _ in range(20)))
    assert len({key_id for key_id, _ in results}) == 1
    assert len(await store.by_workspace("ws-1", scope="WORKSPACE")) == 1
    assert len(await store.by_call("ws-1", "call-1")) == 1


async def test_racing_processes_make_two_valid_keys(store, provider):
    a, b = KeyRing(store, provider), KeyRing(store, provider)
    (ka, _), (kb, _) = await asyncio.gather(a.call_key("ws-1", "c"), b.call_key("ws-1", "c"))
    assert ka != kb
    blob_a = await seal_artifact(a, b"from a", aad("c"))
    blob_b = await seal_artifact(b, b"from b", aad("c"))
    reader = KeyRing(store, provider)
    assert await open_artifact(reader, blob_a, aad("c")) == b"from a"
    assert await open_artifact(reader, blob_b, aad("c")) == b"from b"
    # Shredding the call destroys every key it has, however many processes made.
    assert set(await reader.shred_call("ws-1", "c")) >= {ka, kb}
    for blob in (blob_a, blob_b):
        with pytest.raises(KeyDestroyed):
            await open_artifact(KeyRing(store, provider), blob, aad("c"))


async def test_blob_of_another_call_or_workspace_is_refused(ring):
    blob = await seal_artifact(ring, b"x", aad("call-1"))
    await ring.call_key("ws-1", "call-2")
    for other in [aad("call-2"), aad(ws="ws-2"), dataclasses.replace(aad(), kind="summary")]:
        with pytest.raises(DecryptionFailed):
            await open_artifact(ring, blob, other)
    with pytest.raises(KeyScopeMismatch):
        await open_artifact(ring, blob, aad("call-2"))


async def test_key_for_checks_ownership_without_cache(store, provider):
    writer = KeyRing(store, provider)
    key_id, _ = await writer.call_key("ws-1", "call-1")
    wk_id = (await store.by_workspace("ws-1", scope="WORKSPACE"))[0]["key_id"]
    reader = KeyRing(store, provider)
    with pytest.raises(KeyScopeMismatch):
        await reader.key_for(key_id, workspace_id="ws-1", call_id="call-2")
    with pytest.raises(KeyScopeMismatch):
        await reader.key_for(wk_id, workspace_id="ws-1", call_id="call-1")
    with pytest.raises(KeyNotFound):
        await reader.key_for("ck-nope", workspace_id="ws-1", call_id="call-1")


async def test_swapped_wrapped_keys_do_not_unwrap(store, provider):
    ring = KeyRing(store, provider)
    id1, _ = await ring.call_key("ws-1", "call-1")
    id2, _ = await ring.call_key("ws-1", "call-2")
    r1, r2 = await store.get(id1), await store.get(id2)
    assert r1 and r2
    await store.put({**r2, "wrapped_key": r1["wrapped_key"]})
    with pytest.raises(DecryptionFailed):
        await KeyRing(store, provider).key_for(id2, workspace_id="ws-1", call_id="call-2")


async def test_call_record_pointing_at_another_workspace_key_is_refused(store, provider):
    ring = KeyRing(store, provider)
    id1, _ = await ring.call_key("ws-1", "call-1")
    await ring.call_key("ws-2", "call-9")
    wk2 = (await store.by_workspace("ws-2", scope="WORKSPACE"))[0]["key_id"]
    r1 = await store.get(id1)
    assert r1
    await store.put({**r1, "wrapping_key_id": wk2})
    with pytest.raises(KeyScopeMismatch):
        await KeyRing(store, provider).key_for(id1, workspace_id="ws-1", call_id="call-1")


async def test_shred_call_kills_only_that_call(ring, store, provider):
    doomed = [
        await seal_artifact(ring, k.encode(), aad("c1", kind=k)) for k in ("audio", "summary")
    ]
    kept = await seal_artifact(ring, b"kept", aad("c2"))
    destroyed = await ring.shred_call("ws-1", "c1")
    assert destroyed == [peek_key_id(doomed[0])]
    record = await store.get(destroyed[0])
    assert record and record["destroyed"] and record["wrapped_key"] == b""
    get_codec().encode("KeyRecord", record)
    for r in (ring, KeyRing(store, provider)):
        for blob, kind in zip(doomed, ("audio", "summary"), strict=True):
            with pytest.raises(KeyDestroyed):
                await open_artifact(r, blob, aad("c1", kind=kind))
        assert await open_artifact(r, kept, aad("c2")) == b"kept"
    with pytest.raises(KeyDestroyed, match="shredded"):
        await ring.call_key("ws-1", "c1")  # late data must not quietly undo the erasure
    assert await ring.shred_call("ws-1", "c1") == []


async def test_shred_workspace_kills_all_of_it(ring, store, provider):
    blobs = [await seal_artifact(ring, b"x", aad(f"c{i}")) for i in range(3)]
    other = await seal_artifact(ring, b"other", aad("c0", ws="ws-2"))
    destroyed = await ring.shred_workspace("ws-1")
    ws_records = await store.by_workspace("ws-1")
    assert sorted(destroyed) == sorted(r["key_id"] for r in ws_records)
    assert len(destroyed) == 4
    assert all(r["destroyed"] and r["wrapped_key"] == b"" for r in ws_records)
    for r in (ring, KeyRing(store, provider)):
        for i, blob in enumerate(blobs):
            with pytest.raises(KeyDestroyed):
                await open_artifact(r, blob, aad(f"c{i}"))
        assert await open_artifact(r, other, aad("c0", ws="ws-2")) == b"other"
    with pytest.raises(KeyDestroyed, match="shredded"):
        await ring.call_key("ws-1", "new-call")


async def test_destroying_the_workspace_key_alone_shreds_its_calls(store, provider):
    """A crash after the first write of shred_workspace still leaves the data unrecoverable."""
    ring = KeyRing(store, provider)
    blob = await seal_artifact(ring, b"x", aad())
    wk = (await store.by_workspace("ws-1", scope="WORKSPACE"))[0]
    await store.put({**wk, "wrapped_key": b"", "destroyed": True})
    with pytest.raises(KeyDestroyed):
        await open_artifact(KeyRing(store, provider), blob, aad())


async def test_rotate_workspace_key_rewraps_without_reencrypting(ring, store, provider):
    blobs = {
        f"c{i}": await seal_artifact(ring, f"data {i}".encode(), aad(f"c{i}")) for i in range(3)
    }
    await ring.shred_call("ws-1", "c2")  # a shredded call stays shredded
    frozen = {call: bytes(blob) for call, blob in blobs.items()}
    before = {r["key_id"]: r for r in await store.by_workspace("ws-1", scope="CALL")}
    keys_before = {
        call: await ring.key_for(peek_key_id(blob), workspace_id="ws-1", call_id=call)
        for call, blob in blobs.items()
        if call != "c2"
    }
    (old_wk,) = await store.by_workspace("ws-1", scope="WORKSPACE")

    rotation = await ring.rotate_workspace_key("ws-1")

    assert rotation.retired_key_ids == (old_wk["key_id"],)
    assert sorted(rotation.rewrapped_call_key_ids) == sorted(
        peek_key_id(blobs[c]) for c in ("c0", "c1")
    )
    old = await store.get(old_wk["key_id"])
    assert old and old["destroyed"] and old["wrapped_key"] == b""
    after = {r["key_id"]: r for r in await store.by_workspace("ws-1", scope="CALL")}
    assert after.keys() == before.keys()  # same call keys: nothing was re-keyed
    for call in ("c0", "c1"):
        key_id = peek_key_id(blobs[call])
        assert after[key_id]["wrapping_key_id"] == rotation.new_key_id
        assert after[key_id]["wrapped_key"] != before[key_id]["wrapped_key"]
    assert blobs == frozen  # the data was not touched
    fresh = KeyRing(store, provider)
    for call in ("c0", "c1"):
        key = await fresh.key_for(peek_key_id(blobs[call]), workspace_id="ws-1", call_id=call)
        assert key == keys_before[call]
        assert await open_artifact(fresh, blobs[call], aad(call)) == f"data {call[1]}".encode()
    with pytest.raises(KeyDestroyed):
        await open_artifact(fresh, blobs["c2"], aad("c2"))
    new_id, _ = await ring.call_key("ws-1", "c9")
    new_record = await store.get(new_id)
    assert new_record and new_record["wrapping_key_id"] == rotation.new_key_id


async def test_master_rotation_rewraps_workspace_keys(ring, store, provider):
    blob_1 = await seal_artifact(ring, b"one", aad(ws="ws-1"))
    blob_2 = await seal_artifact(ring, b"two", aad(ws="ws-2"))
    old_master = provider.key_id
    new_master = provider.rotate()
    rewrapped = await ring.rewrap_workspace_keys_for_master()
    workspace_records = [r for r in await store.records() if r["scope"] == "WORKSPACE"]
    assert sorted(rewrapped) == sorted(r["key_id"] for r in workspace_records)
    assert {r["wrapping_key_id"] for r in workspace_records} == {new_master}
    assert await ring.rewrap_workspace_keys_for_master() == []  # idempotent
    provider.retire(old_master)
    fresh = KeyRing(store, LocalKeyFileProvider(provider.path))
    assert await open_artifact(fresh, blob_1, aad(ws="ws-1")) == b"one"
    assert await open_artifact(fresh, blob_2, aad(ws="ws-2")) == b"two"


async def test_forget_drops_a_key_another_process_destroyed(store, provider):
    holder, shredder = KeyRing(store, provider), KeyRing(store, provider)
    blob = await seal_artifact(holder, b"x", aad())
    key_id = peek_key_id(blob)
    await shredder.shred_call("ws-1", "call-1")
    assert holder.is_cached(key_id)
    assert await open_artifact(holder, blob, aad()) == b"x"  # until the view tells it
    holder.forget(key_id)
    assert not holder.is_cached(key_id)
    with pytest.raises(KeyDestroyed):
        await open_artifact(holder, blob, aad())


async def test_cache_is_a_bounded_lru(store, tmp_path):
    provider = CountingProvider(LocalKeyFileProvider.create_if_missing(tmp_path / "m.json"))
    ring = KeyRing(store, provider, cache_size=2)
    blobs = [await seal_artifact(ring, b"x", aad(f"c{i}")) for i in range(3)]
    assert [ring.is_cached(peek_key_id(b)) for b in blobs] == [False, False, True]
    for i, blob in enumerate(blobs):
        assert await open_artifact(ring, blob, aad(f"c{i}")) == b"x"


async def test_workspace_key_is_unwrapped_once_for_concurrent_readers(store, tmp_path):
    inner = LocalKeyFileProvider.create_if_missing(tmp_path / "m.json")
    writer = KeyRing(store, inner)
    blobs = [await seal_artifact(writer, b"x", aad(f"c{i}")) for i in range(10)]
    provider = CountingProvider(inner)
    reader = KeyRing(store, provider)
    opened = await asyncio.gather(
        *(open_artifact(reader, blob, aad(f"c{i}")) for i, blob in enumerate(blobs))
    )
    assert opened == [b"x"] * 10
    assert provider.calls == ["unwrap"]


class GatedStore(InMemoryKeyStore):
    """Holds back the write of one call's key until released: a slow producer."""

    def __init__(self, call_id: str) -> None:
        super().__init__()
        self.call_id = call_id
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def put(self, record: KeyRecord) -> None:
        if record["call_id"] == self.call_id and not self.release.is_set():
            self.reached.set()
            await self.release.wait()
        await super().put(record)


async def test_key_created_during_a_rotation_is_rewrapped(provider):
    store = GatedStore("slow")
    ring = KeyRing(store, provider)
    await ring.call_key("ws-1", "warm-up")
    creating = asyncio.create_task(ring.call_key("ws-1", "slow"))
    await store.reached.wait()  # wrapped under the old workspace key, not yet written
    rotation = await ring.rotate_workspace_key("ws-1")
    store.release.set()
    key_id, key = await creating
    record = await store.get(key_id)
    assert record and record["wrapping_key_id"] == rotation.new_key_id
    fresh = KeyRing(store, provider)
    assert await fresh.key_for(key_id, workspace_id="ws-1", call_id="slow") == key


async def test_store_refuses_to_revive_a_destroyed_key(ring, store):
    key_id, _ = await ring.call_key("ws-1", "c")
    live = await store.get(key_id)
    await ring.shred_call("ws-1", "c")
    assert live
    with pytest.raises(KeyDestroyed):
        await store.put(live)


async def test_reprs_hold_no_key_material(ring, store, provider):
    _, key = await ring.call_key("ws-1", "c")
    wk = (await store.by_workspace("ws-1", scope="WORKSPACE"))[0]["key_id"]
    wk_key = await ring._workspace_key(wk, "ws-1")
    for text in (repr(ring), repr(store), repr(ring._cache)):
        for secret in (key, wk_key):
            assert secret.hex() not in text
            assert repr(secret) not in text
