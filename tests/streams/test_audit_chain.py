"""The audit chain on the real stack: a worker chains ``audit.events`` into ``audit.chain.eu``;
``callvault audit verify`` / ``export`` run in-process through the real entry point; a forged
entry is caught; a replay of ``audit.events`` after a restart chains nothing twice."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from callvault.audit import audit_event, encode_audit
from callvault.cli.main import main
from callvault.kafka_client import kafka_options
from callvault.settings import Settings, settings_env
from callvault.topics import Topics, ensure_topics
from callvault.worker_process import wait_caught_up
from schemas.codec import get_codec
from tests.kafka_read import read_all
from tests.streams.conftest import group_of, isolated_settings

pytestmark = pytest.mark.integration


def _events(region: str | None, n: int, action: str = "workspace.update") -> list[dict[str, Any]]:
    ws = {"eu": "acme", "na": "globex", None: None}[region]
    return [
        audit_event(
            action,
            actor_kind="USER",
            actor_id=f"user{i}",
            workspace_id=ws,
            region=region,
            target=ws,
            details={"i": i},
        )
        for i in range(n)
    ]


async def _produce(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(**kafka_options(settings), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, key=key, value=value)
    finally:
        await producer.stop()


async def _chain(settings: Settings) -> list[dict[str, Any]]:
    records = await read_all(settings, Topics(settings).audit_chain("eu"))
    return [get_codec().decode("AuditEvent", r.value) for r in records]


async def _cli(
    args: list[str], settings: Settings, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, str, str]:  # fmt: skip
    for key, value in settings_env(settings).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    capsys.readouterr()

    def invoke() -> int:
        try:
            main(args)
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0

    code = await asyncio.to_thread(invoke)  # the CLI runs its own event loop
    out, err = capsys.readouterr()
    return code, out, err


async def _expected(settings: Settings) -> list[str]:
    """The event ids ``audit.chain.eu`` must hold: eu and region-less events of audit.events."""
    records = await read_all(settings, Topics(settings).audit_events)
    events = [get_codec().decode("AuditEvent", r.value) for r in records]
    return [e["event_id"] for e in events if e["region"] in ("eu", None)]


async def _rewind(settings: Settings, group: str, topic: str) -> None:
    """Make the (stopped) worker's group consume ``topic`` again from offset 0: a replay."""
    consumer = AIOKafkaConsumer(**kafka_options(settings), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.commit({tp: 0})
    finally:
        await consumer.stop()


async def test_chain_verify_export_forgery_and_replay(
    stack_settings: Settings, worker_factory: Any, tmp_path: Path, monkeypatch, capsys
) -> None:
    # no workspaces: creating one is itself an audit event, and this test counts every entry
    settings = isolated_settings(stack_settings, tmp_path)
    await ensure_topics(settings)
    topics = Topics(settings)
    events = _events("eu", 3) + _events("na", 2) + _events(None, 2)
    await _produce(settings, topics.audit_events, [encode_audit(e) for e in events])
    worker = worker_factory(settings)
    await worker.wait_healthy()
    group = group_of(settings)
    await wait_caught_up(settings, group, [topics.audit_events], worker=worker, timeout_s=60)

    chain = await _chain(settings)
    # eu's events and the region-less ones, in source order; na's are na's worker's business
    # (passed over, not refused: a refusal would be an event for na to refuse in turn)
    expected = await _expected(settings)
    assert [c["event_id"] for c in chain] == expected
    assert len(expected) == 5 and {e["event_id"] for e in events if e["region"] != "na"} <= set(
        expected
    )
    assert [c["details"]["chain.seq"] for c in chain] == [str(i) for i in range(5)]
    assert chain[0]["prev_hash"] is None and chain[1]["prev_hash"] == chain[0]["hash"]
    assert all(len(c["signature"]) == 64 for c in chain)

    code, out, err = await _cli(["audit", "verify"], settings, monkeypatch, capsys)
    assert code == 0, (out, err)
    assert out.startswith("OK: audit chain eu: 5 entries verified")
    assert chain[-1]["hash"].hex() in out
    code, out, _ = await _cli(["audit", "verify", "--json"], settings, monkeypatch, capsys)
    report = json.loads(out)
    assert (code, report["ok"], report["count"], report["head_seq"]) == (0, True, 5, 4)

    jsonl = tmp_path / "audit.jsonl"
    code, out, err = await _cli(
        ["audit", "export", "--format", "jsonl", "--out", str(jsonl)], settings, monkeypatch,
        capsys,
    )  # fmt: skip
    assert code == 0, err
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["event_id"] for line in lines] == expected
    assert lines[2]["hash"] == chain[2]["hash"].hex()
    assert lines[2]["signature"] == chain[2]["signature"].hex()
    code, out, err = await _cli(
        ["audit", "export", "--format", "cef"], settings, monkeypatch, capsys
    )
    assert code == 0, err
    cef = out.splitlines()
    # 5, or 6 once the worker chained the jsonl export's own audit event
    assert len(cef) in (5, 6) and all(line.startswith("CEF:0|Callvault|") for line in cef)
    assert f"cs6={chain[0]['hash'].hex()}" in cef[0]
    # each export is an audit event itself (region eu: chained too)
    await wait_caught_up(settings, group, [topics.audit_events], worker=worker, timeout_s=60)
    exports = [c for c in await _chain(settings) if c["action"] == "audit.export"]
    assert [(e["details"]["format"], e["details"]["count"]) for e in exports] == [
        ("jsonl", "5"),
        ("cef", str(len(cef))),
    ]

    # replay: the worker stops, its group is rewound to the start of audit.events, it restarts
    worker.stop()
    await _rewind(settings, group, topics.audit_events)
    restarted = worker_factory(settings)
    await restarted.wait_healthy()
    late = _events("eu", 1, action="trunk.rotate")
    await _produce(settings, topics.audit_events, [encode_audit(e) for e in late])
    await wait_caught_up(settings, group, [topics.audit_events], worker=restarted, timeout_s=60)
    chain = await _chain(settings)
    ids = [c["event_id"] for c in chain]
    # nothing twice: the replay's only new entry is the new event
    assert ids == await _expected(settings)
    assert len(ids) == len(set(ids)) == 5 + 2 + 1, ids
    assert late[0]["event_id"] in ids
    assert [c["details"]["chain.seq"] for c in chain] == [str(i) for i in range(len(ids))]
    code, out, err = await _cli(["audit", "verify"], settings, monkeypatch, capsys)
    assert code == 0 and f"{len(ids)} entries verified" in out, (out, err)

    # forgery: an edited copy of a real entry, with its original hash and signature (the
    # worker is stopped first, so no later entry links to the forged one)
    restarted.stop()
    forged = dict(chain[3])
    forged["details"] = {**forged["details"], "i": "999"}
    await _produce(settings, topics.audit_chain("eu"), [encode_audit(forged)])
    code, out, _ = await _cli(["audit", "verify", "--json"], settings, monkeypatch, capsys)
    report = json.loads(out)
    assert code == 1
    assert report["failure"]["reason"] == "edited"
    assert (report["failure"]["position"], report["failure"]["seq"]) == (len(ids), 3)
    assert report["failure"]["event_id"] == chain[3]["event_id"]
    assert report["head_seq"] == len(ids) - 1
    code, out, err = await _cli(["audit", "verify"], settings, monkeypatch, capsys)
    assert code == 1, out
    assert out.startswith(f"FAILED: audit chain eu: entry seq 3 (offset {len(ids)})"), out
    # a broken chain is not exported, unless asked, and then marked
    code, out, err = await _cli(["audit", "export"], settings, monkeypatch, capsys)
    assert code == 1 and out == "" and "does not verify" in err
    code, out, err = await _cli(
        ["audit", "export", "--allow-broken"], settings, monkeypatch, capsys
    )
    assert code == 0, err
    marked = [json.loads(line) for line in out.splitlines()]
    assert len(marked) == len(ids) + 1 and marked[-1]["chain_status"] == "unverified"
    assert "chain_status" not in marked[0]
