"""The Kafka key store against the real broker: indexes, durability, shreds reaching other
processes, what stays in the topic after a shred, and that destroyed keys stay destroyed.

"Another process" is a second :class:`KafkaKeyStore` + :class:`KeyRing` with its own consumer
and producer: everything it knows comes through Kafka, exactly as for another worker.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from callvault.control.keys import KafkaKeyStore, KeyAdmin, Keys, open_keys
from callvault.control.workspaces import WorkspaceDirectory
from callvault.crypto.envelope import Aad, peek_key_id
from callvault.crypto.errors import KeyDestroyed
from callvault.crypto.keyring import ALGORITHM, KeyRecord, open_artifact, seal_artifact
from callvault.crypto.providers import LocalKeyFileProvider
from callvault.errors import ControlError, KafkaUnavailable
from callvault.kafka_client import kafka_options
from callvault.settings import Settings
from callvault.topics import Topics
from schemas.codec import get_codec
from tests.callvault.control.keyenv import audit_events, ensure_key_topics, key_settings
from tests.kafka_read import read_all

pytestmark = pytest.mark.integration


@pytest.fixture
async def settings(stack_settings: Settings, tmp_path: Path) -> AsyncIterator[Settings]:
    settings = key_settings(stack_settings, tmp_path)
    await ensure_key_topics(settings)
    yield settings


@pytest.fixture
def provider(settings: Settings) -> LocalKeyFileProvider:
    return LocalKeyFileProvider.create_if_missing(settings.master_key_file)


def _record(key_id: str, workspace_id: str | None, call_id: str | None, **kw: object) -> KeyRecord:
    record: KeyRecord = {
        "key_id": key_id,
        "scope": "CALL" if call_id else "WORKSPACE",
        "workspace_id": workspace_id,
        "call_id": call_id,
        "wrapped_key": b"wrapped:" + key_id.encode(),
        "wrapping_key_id": "wk-parent",
        "algorithm": ALGORITHM,
        "created_at": datetime.now(UTC),
        "destroyed": False,
    }
    record.update(kw)  # type: ignore[typeddict-item]
    return record


def _aad(workspace_id: str, call_id: str, kind: str = "transcript") -> Aad:
    return Aad(workspace_id, call_id, kind, "eu")


async def test_put_get_and_indexes_seen_by_another_store(settings: Settings) -> None:
    async with KafkaKeyStore(settings) as store:
        await store.put(_record("wk-a", "acme", None))
        await store.put(_record("ck-1", "acme", "c1"))
        await store.put(_record("ck-2", "acme", "c1"))
        await store.put(_record("ck-3", "acme", "c2"))
        await store.put(_record("ck-9", "globex", "c1"))
        # put is visible in the writer's own view when it returns
        got = await store.get("ck-1")
        assert got is not None and got["wrapped_key"] == b"wrapped:ck-1"
        assert await store.get("nope") is None
        # snapshots: mutating a result does not touch the store
        got["wrapped_key"] = b"changed"
        assert (await store.get("ck-1"))["wrapped_key"] == b"wrapped:ck-1"  # type: ignore[index]

    async with KafkaKeyStore(settings) as other:  # loads the topic from the beginning
        assert {r["key_id"] for r in await other.by_call("acme", "c1")} == {"ck-1", "ck-2"}
        assert {r["key_id"] for r in await other.by_call("globex", "c1")} == {"ck-9"}
        assert await other.by_call("acme", "nope") == []
        assert {r["key_id"] for r in await other.by_workspace("acme")} == {
            "wk-a",
            "ck-1",
            "ck-2",
            "ck-3",
        }
        ws_keys = await other.by_workspace("acme", scope="WORKSPACE")
        assert [r["key_id"] for r in ws_keys] == ["wk-a"]
        assert len(await other.records()) == 5
        record = await other.get("ck-3")
        assert record is not None
        assert record["created_at"].tzinfo is not None and record["scope"] == "CALL"

        # an update that moves nothing keeps the indexes consistent
        async with KafkaKeyStore(settings) as writer:
            await writer.put(_record("ck-3", "acme", "c2", wrapping_key_id="wk-b"))
        await other.sync()
        assert [r["wrapping_key_id"] for r in await other.by_call("acme", "c2")] == ["wk-b"]


async def test_keyring_over_kafka_opens_in_another_process(
    settings: Settings, provider: LocalKeyFileProvider
) -> None:
    async with (
        open_keys(settings, provider=provider) as a,
        open_keys(settings, provider=provider) as b,
    ):
        blob = await seal_artifact(a.ring, b"hello", _aad("acme", "c1"))
        await b.store.sync()
        assert await open_artifact(b.ring, blob, _aad("acme", "c1")) == b"hello"
        # one workspace key and one call key, shared by both rings
        assert len(await b.store.by_workspace("acme", scope="WORKSPACE")) == 1
        key_id, _ = await b.ring.call_key("acme", "c1")
        assert key_id == peek_key_id(blob)


async def _wait_destroyed(keys: Keys, blob: bytes, aad: Aad, timeout_s: float = 10.0) -> float:
    """Open ``blob`` until it raises KeyDestroyed (no sync: pure propagation); seconds taken."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            await open_artifact(keys.ring, blob, aad)
        except KeyDestroyed:
            return time.monotonic() - started
        await asyncio.sleep(0.002)
    raise AssertionError(f"shred not seen after {timeout_s} s")


async def test_call_shred_reaches_another_process_with_the_key_cached(
    settings: Settings, provider: LocalKeyFileProvider
) -> None:
    aad = _aad("acme", "c1")
    async with (
        open_keys(settings, provider=provider) as operator,
        open_keys(settings, provider=provider) as worker,
    ):
        blob = await seal_artifact(operator.ring, b"secret transcript", aad)
        other = await seal_artifact(operator.ring, b"other call", _aad("acme", "c2"))
        await worker.store.sync()
        assert await open_artifact(worker.ring, blob, aad) == b"secret transcript"
        key_id = peek_key_id(blob)
        assert worker.ring.is_cached(key_id)

        assert await operator.ring.shred_call("acme", "c1") == [key_id]
        took = await _wait_destroyed(worker, blob, aad)
        print(f"\nshred -> KeyDestroyed in the other process: {took * 1000:.1f} ms")
        assert took < 5.0
        assert not worker.ring.is_cached(key_id)  # forgotten by the listener, not just refused
        with pytest.raises(KeyDestroyed):
            await worker.ring.call_key("acme", "c1")  # no new key for a shredded call
        # the rest of the workspace is untouched
        assert await open_artifact(worker.ring, other, _aad("acme", "c2")) == b"other call"

    # a process started after the shred: refused from its first read
    async with open_keys(settings, provider=provider) as late:
        with pytest.raises(KeyDestroyed):
            await open_artifact(late.ring, blob, aad)


async def test_workspace_shred_reaches_another_process_after_sync(
    settings: Settings, provider: LocalKeyFileProvider
) -> None:
    async with (
        open_keys(settings, provider=provider) as operator,
        open_keys(settings, provider=provider) as worker,
    ):
        blobs = {c: await seal_artifact(operator.ring, c.encode(), _aad("acme", c)) for c in "xy"}
        keep = await seal_artifact(operator.ring, b"globex", _aad("globex", "g1"))
        await worker.store.sync()
        for c, blob in blobs.items():
            assert await open_artifact(worker.ring, blob, _aad("acme", c)) == c.encode()
        destroyed = await operator.ring.shred_workspace("acme")
        assert len(destroyed) == 3  # the workspace key and two call keys
        await worker.store.sync()
        for c, blob in blobs.items():
            with pytest.raises(KeyDestroyed):
                await open_artifact(worker.ring, blob, _aad("acme", c))
        with pytest.raises(KeyDestroyed):
            await worker.ring.call_key("acme", "new-call")
        assert await open_artifact(worker.ring, keep, _aad("globex", "g1")) == b"globex"


async def test_destroyed_workspace_key_evicts_cached_call_keys_under_it(
    settings: Settings, provider: LocalKeyFileProvider
) -> None:
    """A shred that crashed half-way (workspace key destroyed, call key records not yet):
    another process's cached call key is dropped all the same."""
    aad = _aad("acme", "c1")
    async with (
        open_keys(settings, provider=provider) as operator,
        open_keys(settings, provider=provider) as worker,
    ):
        blob = await seal_artifact(operator.ring, b"data", aad)
        await worker.store.sync()
        assert await open_artifact(worker.ring, blob, aad) == b"data"
        (wk,) = await operator.store.by_workspace("acme", scope="WORKSPACE")
        await operator.store.put({**wk, "destroyed": True})  # only the workspace key
        await worker.store.sync()
        assert not worker.ring.is_cached(peek_key_id(blob))
        with pytest.raises(KeyDestroyed):
            await open_artifact(worker.ring, blob, aad)


async def test_no_wrapped_bytes_remain_for_a_fresh_reader_after_a_shred(
    settings: Settings, provider: LocalKeyFileProvider
) -> None:
    aad = _aad("acme", "c1")
    async with open_keys(settings, provider=provider) as keys:
        blob = await seal_artifact(keys.ring, b"data", aad)
        key_id = peek_key_id(blob)
        await keys.ring.shred_call("acme", "c1")

    codec = get_codec()
    messages = [
        codec.decode("KeyRecord", m.value)
        for m in await read_all(settings, Topics(settings).name("control.keys"))
        if m.key == key_id.encode() and m.value is not None
    ]
    # Until the log cleaner runs (at most max.compaction.lag.ms = 24 h later) the first message
    # still holds the wrapped key; the latest one, all a reader keeps, holds none.
    assert messages[0]["wrapped_key"] != b"" and not messages[0]["destroyed"]
    assert messages[-1]["wrapped_key"] == b"" and messages[-1]["destroyed"]
    configs = Topics(settings).specs["control.keys"].config
    assert configs["max.compaction.lag.ms"] == str(24 * 3600 * 1000)

    async with KafkaKeyStore(settings) as fresh:
        record = await fresh.get(key_id)
        assert record is not None and record["destroyed"] and record["wrapped_key"] == b""
        assert all(r["wrapped_key"] == b"" for r in await fresh.by_call("acme", "c1"))


async def test_a_destroyed_key_cannot_be_revived(settings: Settings) -> None:
    async with KafkaKeyStore(settings) as store:
        live = _record("ck-1", "acme", "c1")
        await store.put(live)
        # a destroyed record never carries key material, whatever the caller passes
        await store.put({**live, "destroyed": True})
        assert (await store.get("ck-1"))["wrapped_key"] == b""  # type: ignore[index]
        with pytest.raises(KeyDestroyed, match="cannot be revived"):
            await store.put(live)
        assert (await store.get("ck-1"))["destroyed"]  # type: ignore[index]


async def test_a_revival_racing_a_shred_is_undone(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer whose view had not seen another process's shred yet writes a live record after
    the destroyed one: it notices once its write is visible, re-destroys and raises."""
    async with KafkaKeyStore(settings) as a, KafkaKeyStore(settings) as b:
        live = _record("ck-1", "acme", "c1")
        await a.put(live)
        await b.sync()
        await a.put({**live, "destroyed": True})
        monkeypatch.setattr(b, "_seen_destroyed", lambda key_id: False)  # b's view is stale
        with pytest.raises(KeyDestroyed, match="while it was being written"):
            await b.put({**live, "wrapping_key_id": "wk-new"})

    codec = get_codec()
    history = [
        codec.decode("KeyRecord", m.value)
        for m in await read_all(settings, Topics(settings).name("control.keys"))
        if m.key == b"ck-1" and m.value is not None
    ]
    assert [r["destroyed"] for r in history] == [False, True, False, True]
    assert history[-1]["wrapped_key"] == b""


async def test_a_live_record_after_a_destroyed_one_reads_as_destroyed(settings: Settings) -> None:
    """Written behind the store's back (old code, a crashed writer): readers stay safe."""
    codec = get_codec()
    live = _record("ck-1", "acme", "c1")
    producer = AIOKafkaProducer(**kafka_options(settings), acks="all")
    await producer.start()
    try:
        for record in (live, {**live, "destroyed": True, "wrapped_key": b""}, live):
            value = codec.encode("KeyRecord", record)
            await producer.send_and_wait(
                Topics(settings).name("control.keys"), key=b"ck-1", value=value
            )
    finally:
        await producer.stop()
    forgotten: list[str] = []
    async with KafkaKeyStore(settings, on_destroyed=forgotten.append) as store:
        record = await store.get("ck-1")
        assert record is not None and record["destroyed"] and record["wrapped_key"] == b""
        assert [r["destroyed"] for r in await store.by_call("acme", "c1")] == [True]
        with pytest.raises(KeyDestroyed):
            await store.put(live)
    assert forgotten == ["ck-1", "ck-1"]


async def test_a_failing_listener_fails_closed(settings: Settings) -> None:
    async with KafkaKeyStore(settings) as writer, KafkaKeyStore(settings) as reader:

        def broken(key_id: str) -> None:
            raise RuntimeError("cannot drop the key")

        heard: list[str] = []
        reader.subscribe(broken)
        reader.subscribe(heard.append)
        await writer.put(_record("ck-1", "acme", "c1", destroyed=True))
        with pytest.raises(KafkaUnavailable, match="cannot drop the key"):
            await reader.sync()
        assert heard == ["ck-1"]  # the other listeners still heard it
        with pytest.raises(KafkaUnavailable):
            await reader.get("ck-1")


async def test_unsubscribe(settings: Settings) -> None:
    async with KafkaKeyStore(settings) as store:
        heard: list[str] = []
        unsubscribe = store.subscribe(heard.append)
        await store.put(_record("ck-1", "acme", "c1", destroyed=True))
        unsubscribe()
        unsubscribe()  # idempotent
        await store.put(_record("ck-2", "acme", "c1", destroyed=True))
        assert heard == ["ck-1"]


async def test_store_outside_its_context_is_an_error(settings: Settings) -> None:
    store = KafkaKeyStore(settings)
    with pytest.raises(RuntimeError, match="before start"):
        await store.get("ck-1")
    await store.start()
    try:
        assert await store.get("ck-1") is None
    finally:
        await store.stop()


# -- KeyAdmin: audited operations -----------------------------------------------------------


async def test_admin_operations_are_audited_without_key_material(
    settings: Settings, provider: LocalKeyFileProvider
) -> None:
    async with WorkspaceDirectory(settings) as workspaces:
        await workspaces.create("acme", region="na")
    async with open_keys(settings, provider=provider) as keys:
        admin = KeyAdmin(settings, keys, actor="cli:tester")
        blob = await seal_artifact(keys.ring, b"a", _aad("acme", "c1"))
        await seal_artifact(keys.ring, b"b", _aad("acme", "c2"))

        rotation = await admin.rotate_workspace("acme")
        assert len(rotation.rewrapped_call_key_ids) == 2
        assert await open_artifact(keys.ring, blob, _aad("acme", "c1")) == b"a"

        shred = await admin.shred_call("acme", "c1")
        assert shred.destroyed_key_ids == (peek_key_id(blob),)
        again = await admin.shred_call("acme", "c1")
        assert again.already_shredded

        # nothing to shred yet: a destroyed marker stops any key being minted later
        marked = await admin.shred_call("acme", "future-call")
        assert marked.marker_key_id is not None and not marked.destroyed_key_ids
        with pytest.raises(KeyDestroyed):
            await keys.ring.call_key("acme", "future-call")

        with pytest.raises(ControlError, match="no workspace key yet"):
            await admin.rotate_workspace("nobody")

        master = await admin.rotate_master(retire_old=True)
        assert master.retired_master_key_ids == (master.previous_master_key_id,)
        assert provider.master_key_ids == (master.master_key_id,)

        ws = await admin.shred_workspace("acme")
        assert rotation.new_key_id in ws.destroyed_key_ids

    events = [e for e in await audit_events(settings) if e["action"].startswith("key.")]
    actions = [e["action"] for e in events]
    assert actions == [
        "key.workspace.rotate",
        "key.call.shred",
        "key.call.shred",
        "key.call.shred",
        "key.workspace.rotate",  # the refusal, outcome FAILURE
        "key.master.rotate",
        "key.master.retire",
        "key.workspace.shred",
    ]
    assert [e["outcome"] for e in events].count("FAILURE") == 1
    first = events[0]
    assert first["actor"] == {"kind": "USER", "id": "cli:tester", "workspace_id": None}
    assert first["workspace_id"] == "acme" and first["target"] == "workspace:acme"
    assert first["region"] == "na"
    assert first["details"]["new_key_id"] == rotation.new_key_id
    assert set(first["details"]["rewrapped_key_ids"].split(",")) == set(
        rotation.rewrapped_call_key_ids
    )
    assert events[1]["details"]["destroyed_key_ids"] == peek_key_id(blob)
    assert events[1]["target"] == "call:c1"
    # no key material anywhere: no wrapped key bytes, no base64 of the master file's keys
    dumped = repr(events)
    for record in await _all_records(settings):
        if record["wrapped_key"]:
            assert record["wrapped_key"].hex() not in dumped
    master_file = settings.master_key_file.read_text()
    for secret in json.loads(master_file)["keys"].values():
        assert secret not in dumped


async def test_audit_ids_are_split_over_several_events(
    settings: Settings, provider: LocalKeyFileProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(KeyAdmin, "AUDIT_IDS_PER_EVENT", 2)
    async with open_keys(settings, provider=provider) as keys:
        for call in ("c1", "c2", "c3"):
            await keys.ring.call_key("acme", call)
        result = await KeyAdmin(settings, keys).shred_workspace("acme")
    assert len(result.destroyed_key_ids) == 4
    events = [e for e in await audit_events(settings) if e["action"] == "key.workspace.shred"]
    assert [e["details"]["part"] for e in events] == ["1/2", "2/2"]
    ids = [i for e in events for i in e["details"]["destroyed_key_ids"].split(",")]
    assert ids == list(result.destroyed_key_ids)
    assert {e["details"]["destroyed_key_count"] for e in events} == {"4"}


async def _all_records(settings: Settings) -> list[dict[str, object]]:
    codec = get_codec()
    return [
        codec.decode("KeyRecord", m.value)
        for m in await read_all(settings, Topics(settings).name("control.keys"))
        if m.value is not None
    ]
