"""``callvault replay`` on the real stack: a time window seeked by timestamp on every partition,
workspace and call filters, decryption, records of erased, deleted or expired calls never
released, republishing the sealed bytes, refusals, permissions and the audit trail."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from callvault.cli.main import EXIT_REFUSED
from callvault.control.keys import open_keys
from callvault.control.workspaces import WorkspaceDirectory, WorkspacePolicy
from callvault.kafka_client import kafka_options
from callvault.replay import parse_time
from callvault.settings import Settings
from callvault.simulate import simulated_calls
from callvault.topics import Topics, ensure_topics
from schemas.codec import get_codec
from streams.governance import CallKey, seal_audio_chunk, seal_transcript_segment
from streams.metadata import seal_call_event
from tests.callvault.cli.helpers import ok_json as _json
from tests.callvault.control.keyenv import audit_events
from tests.conftest import topic_prefix
from tests.kafka_read import read_all
from tests.streams.test_sealing_slice import _chunk, _segment

pytestmark = pytest.mark.integration

TOPICS = (
    "sealed.metadata", "sealed.audio", "sealed.transcript", "audit.events", "control.keys",
    "control.workspaces", "control.identities",
)  # fmt: skip
NOW = datetime.now(UTC).replace(microsecond=0)
BASE = NOW - timedelta(hours=1)  # the window is BASE +- 5 minutes
FROM, TO = (BASE - timedelta(minutes=5)).isoformat(), (BASE + timedelta(minutes=5)).isoformat()
STARTED = NOW - timedelta(hours=2)
CALL_A, CALL_B, CALL_G, CALL_X, CALL_E = "c-a1", "c-b2", "c-g3", "c-x4", "c-e5"


@dataclass
class World:
    """What the fixture produced: the in-window audio payload and metadata event of CALL_A,
    and the values of every transcript record by text."""

    payload: bytes
    event: dict[str, Any]
    values: dict[str, bytes]


@pytest.fixture
def settings(stack_settings: Settings, tmp_path: Path) -> Settings:
    return stack_settings.model_copy(
        update={
            "home": tmp_path / "home",
            "kafka": stack_settings.kafka.model_copy(update={"topic_prefix": topic_prefix("p")}),
        }
    )


@pytest.fixture
def world(settings: Settings) -> World:
    return asyncio.run(_produce(settings))


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


async def _produce(settings: Settings) -> World:
    """Sealed records stamped with explicit Kafka timestamps, in time order per partition (the
    way a live topic fills): one before the window, the window, one after it."""
    topics = Topics(settings)
    await ensure_topics(settings, [topics.specs[name] for name in TOPICS])
    async with WorkspaceDirectory(settings) as d:
        await d.create("acme", region="eu", retention_days=30)
        await d.create("globex", region="na", retention_days=30)
    acme = WorkspacePolicy("acme", "acme", "eu", retention_days=30)
    globex = WorkspacePolicy("globex", "globex", "na", retention_days=30)
    codec, now = get_codec(), datetime.now(UTC)
    transcripts: list[tuple[datetime, str, bytes]] = []  # (timestamp, key, value)
    values: dict[str, bytes] = {}
    async with open_keys(settings) as keys:

        async def key(workspace: str, call: str, started: datetime = STARTED) -> CallKey:
            return CallKey(*await keys.ring.call_key(workspace, call, call_started_at=started))

        async def segment(
            policy: WorkspacePolicy, call: str, text: str, at: datetime, started: datetime = STARTED
        ) -> None:
            seg = _segment(call, text, started=started, workspace_id=policy.workspace_id,
                           segment_id=f"s-{text}")  # fmt: skip
            sealed = seal_transcript_segment(
                seg, policy, await key(policy.workspace_id, call, started), now=now
            )
            values[text] = codec.encode("SealedTranscriptSegment", sealed)
            transcripts.append((at, call, values[text]))

        await segment(acme, CALL_A, "too early", BASE - timedelta(minutes=30))
        await segment(acme, CALL_A, "hello from A", BASE)
        await segment(acme, CALL_B, "hello from B", BASE + timedelta(minutes=1))
        await segment(globex, CALL_G, "hello from G", BASE)
        await segment(acme, CALL_X, "shredded", BASE)
        expired_start = NOW - timedelta(days=31)
        await segment(acme, CALL_E, "expired", BASE, started=expired_start)
        await segment(acme, CALL_A, "too late", BASE + timedelta(minutes=30))
        chunk = _chunk(CALL_A, 0, started=STARTED)
        audio = codec.encode(
            "SealedAudioChunk", seal_audio_chunk(chunk, acme, await key("acme", CALL_A), now=now)
        )
        event = dict(next(iter(simulated_calls("acme", 1, seed=5))).events[0])
        event.update(call_id=CALL_A, call_started_at=STARTED, occurred_at=STARTED)
        metadata = codec.encode(
            "SealedCallEvent",
            seal_call_event(event, acme, pepper=b"p" * 32, key=await key("acme", CALL_A)),
        )
        await keys.ring.shred_call("acme", CALL_X)

    producer = AIOKafkaProducer(**kafka_options(settings), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for at, call, value in sorted(transcripts, key=lambda t: t[0]):
            if at == BASE and call == CALL_A:  # garbage in the window, on A's partition
                await producer.send_and_wait(
                    topics.name("sealed.transcript"), b"not avro", key=b"poison",
                    timestamp_ms=_ms(BASE),
                )  # fmt: skip
            await producer.send_and_wait(
                topics.name("sealed.transcript"), value, key=call.encode(), timestamp_ms=_ms(at),
                headers=[("region", b"eu"), ("workspace", b"acme")],
            )  # fmt: skip
        await producer.send_and_wait(topics.name("sealed.audio"), audio, key=CALL_A.encode(),
                                     timestamp_ms=_ms(BASE))  # fmt: skip
        await producer.send_and_wait(topics.name("sealed.metadata"), metadata,
                                     key=CALL_A.encode(), timestamp_ms=_ms(BASE))  # fmt: skip
    finally:
        await producer.stop()
    return World(chunk["payload"], event, values)


def _replay(cli, *args: str, token: str | None = None) -> tuple[list[dict[str, Any]], dict]:
    """Records (stdout JSON lines) and the summary (stderr JSON) of one replay."""
    code, out, err = cli("replay", "--from", FROM, "--to", TO, "--json", *args, token=token)
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()], json.loads(err)


def _counts(summary: dict[str, Any]) -> tuple[int, ...]:
    keys = ("scanned", "matched", "written", "skipped_erased", "skipped_expired", "undecodable")
    return tuple(summary[k] for k in keys)


def test_time_parsing() -> None:
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert parse_time("2026-11-27T10:00:00Z") == datetime(2026, 11, 27, 10, tzinfo=UTC)
    assert parse_time("2026-11-27T10:00:00") == datetime(2026, 11, 27, 10, tzinfo=UTC)
    assert parse_time("-15m", now=now) == now - timedelta(minutes=15)
    assert parse_time("-2h", now=now) == now - timedelta(hours=2)
    assert parse_time("-1d", now=now) == now - timedelta(days=1)
    assert parse_time("now", now=now) == now
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_time("yesterday")


def test_window_filters_decrypt_and_what_is_never_released(settings, world, cli, tmp_path):
    # the window, every workspace (the local operator): erased and expired counted, not shown;
    # the garbage record is counted undecodable
    records, summary = _replay(cli, "--topic", "sealed.transcript")
    assert sorted(r["record"]["call_id"] for r in records) == [CALL_A, CALL_B, CALL_G]
    assert all("text" not in r["record"] and r["record"]["ciphertext"] for r in records)
    assert _counts(summary) == (6, 5, 3, 1, 1, 1)

    # filters: workspace, then workspace and call
    records, _ = _replay(cli, "--topic", "sealed.transcript", "--workspace", "globex")
    assert [r["record"]["call_id"] for r in records] == [CALL_G]
    records, summary = _replay(
        cli, "--topic", "sealed.transcript", "--workspace", "acme", "--call", CALL_B
    )
    assert [r["record"]["call_id"] for r in records] == [CALL_B] and summary["matched"] == 1

    # decrypted to a 0600 file: plaintext of the live calls only
    out = tmp_path / "replay.jsonl"
    code, text, err = cli("replay", "--topic", "sealed.transcript", "--from", FROM, "--to", TO,
                          "--workspace", "acme", "--decrypt", "--out", str(out),
                          "--json")  # fmt: skip
    assert code == 0, err
    summary = json.loads(text)
    assert _counts(summary) == (6, 4, 2, 1, 1, 1) and summary["decrypt"] is True
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["record"]["text"] for r in lines) == ["hello from A", "hello from B"]
    assert all("ciphertext" not in r["record"] and r["decrypted"] for r in lines)

    # audio as base64, the metadata's phone numbers
    records, _ = _replay(cli, "--topic", "sealed.audio", "--call", CALL_A, "--decrypt")
    assert [base64.b64decode(r["record"]["payload"]) for r in records] == [world.payload]
    records, _ = _replay(cli, "--topic", "sealed.metadata", "--decrypt")
    assert [r["record"]["numbers"]["caller"] for r in records] == [world.event["caller_number"]]

    # relative times: the last two hours hold the records before and after the window too
    code, out_text, err = cli("replay", "--topic", "sealed.transcript", "--from", "-2h",
                              "--workspace", "acme", "--call", CALL_A, "--decrypt")  # fmt: skip
    assert code == 0, err
    texts = [json.loads(line)["record"]["text"] for line in out_text.splitlines()]
    assert sorted(texts) == ["hello from A", "too early", "too late"]
    assert "written 3" in err

    # a deleted workspace's records are gone, also without --decrypt
    async def delete_globex() -> None:
        async with WorkspaceDirectory(settings) as d:
            await d.update("globex", deleted=True)

    asyncio.run(delete_globex())
    records, summary = _replay(cli, "--topic", "sealed.transcript", "--workspace", "globex")
    assert records == [] and summary["skipped_erased"] == 1

    # refusals, before anything is read
    code, _, err = cli("replay", "--topic", "ingest.transcript", "--from", FROM)
    assert code == EXIT_REFUSED and "not replayable" in err and "sealed.transcript" in err
    code, _, err = cli("replay", "--topic", "sealed.transcript", "--from", FROM, "--decrypt",
                       "--to-topic", "sealed.transcript")  # fmt: skip
    assert code == EXIT_REFUSED and "plaintext is never published" in err
    code, _, err = cli("replay", "--topic", "sealed.transcript", "--from", "yesterday")
    assert code == 2 and "ISO-8601" in err

    # republished: the same bytes, key and headers again, erased and expired records not
    code, text, err = cli("replay", "--topic", "sealed.transcript", "--from", FROM, "--to", TO,
                          "--workspace", "acme", "--to-topic", "sealed.transcript",
                          "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(text)["written"] == 2
    msgs = asyncio.run(read_all(settings, Topics(settings).name("sealed.transcript")))
    copies = {t: [m for m in msgs if m.value == v] for t, v in world.values.items()}
    assert {t: len(ms) for t, ms in copies.items()} == {
        "too early": 1, "hello from A": 2, "hello from B": 2, "hello from G": 1,
        "shredded": 1, "expired": 1, "too late": 1,
    }  # fmt: skip
    first, again = copies["hello from A"]
    assert (again.key, list(again.headers), again.timestamp) == (
        first.key, list(first.headers), first.timestamp,
    )  # fmt: skip

    # every replay is audited: before release (started), then the counts (completed)
    events = [e for e in asyncio.run(audit_events(settings)) if e["action"] == "topics.replay"]
    decrypted = [e["details"] for e in events if e["details"]["destination"] == f"file:{out}"]
    assert [d["phase"] for d in decrypted] == ["started", "completed"]
    assert decrypted[0]["replay_id"] == decrypted[1]["replay_id"]
    assert decrypted[1]["decrypt"] == "True" and decrypted[1]["written"] == "2"
    assert decrypted[1]["skipped_erased"] == "1" and decrypted[1]["skipped_expired"] == "1"
    assert all(e["outcome"] == "SUCCESS" and e["actor"]["id"].startswith("cli:") for e in events)
    assert len([e for e in events if e["details"]["phase"] == "completed"]) == 9


def test_permissions_per_workspace_and_denials_audited(settings, world, cli):
    owner = _json(cli("user", "create", "olivia", "--workspace", "acme", "--role", "owner",
                      "--bootstrap", "--json"))  # fmt: skip
    member = _json(cli("user", "create", "mia", "--workspace", "acme", "--role", "member",
                       "--json", token=owner["token"]))  # fmt: skip

    code, out, err = cli("replay", "--topic", "sealed.transcript", "--from", FROM, "--to", TO,
                         "--workspace", "acme", token=member["token"])  # fmt: skip
    assert code == EXIT_REFUSED and "lacks topics.replay" in err and out == ""
    code, _, err = cli("replay", "--topic", "sealed.transcript", "--from", FROM,
                       token=owner["token"])  # fmt: skip
    assert code == EXIT_REFUSED and "--workspace is required" in err
    code, _, err = cli("replay", "--topic", "sealed.transcript", "--from", FROM,
                       "--workspace", "globex", token=owner["token"])  # fmt: skip
    assert code == EXIT_REFUSED

    records, summary = _replay(cli, "--topic", "sealed.transcript", "--workspace", "acme",
                               "--decrypt", token=owner["token"])  # fmt: skip
    assert sorted(r["record"]["text"] for r in records) == ["hello from A", "hello from B"]
    assert summary["skipped_erased"] == 1 and summary["skipped_expired"] == 1
    # an empty window (nothing at or after --from on any partition) is an empty replay
    code, out, err = cli("replay", "--topic", "sealed.audio", "--from", "-1m", "--workspace",
                         "acme", "--json", token=owner["token"])  # fmt: skip
    assert code == 0 and out == "" and json.loads(err)["scanned"] == 0, err

    events = [e for e in asyncio.run(audit_events(settings)) if e["action"] == "topics.replay"]
    outcomes = sorted((e["actor"]["id"], e["outcome"], e["workspace_id"]) for e in events)
    assert ("mia", "DENIED", "acme") in outcomes
    assert ("olivia", "DENIED", "globex") in outcomes
    mine = [e for e in events if e["actor"]["id"] == "olivia" and e["outcome"] == "SUCCESS"]
    assert [e["details"]["phase"] for e in mine] == ["started", "completed"] * 2
    assert mine[0]["region"] == "eu" and mine[0]["details"]["decrypt"] == "True"
