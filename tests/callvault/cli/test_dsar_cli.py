"""Subject access export through the real entry point, against a real worker: every call of a
number (as caller or callee) and nothing else goes into one encrypted archive that only its
passphrase opens; a shredded call is listed as erased; the export needs export.execute and is
audited without the clear number."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from callvault.cli.main import EXIT_REFUSED
from callvault.control.keys import open_keys
from callvault.control.workspaces import WorkspaceDirectory
from callvault.settings import Settings
from callvault.simulate import call_events, publish_events
from callvault.topics import Topics, ensure_topics
from callvault.worker_process import WorkerProcess, wait_caught_up
from sinks.recordings.mp3 import iter_frames
from streams.metadata import mask_number, normalise_number, number_hash
from tests.callvault.cli.helpers import ok_json as _json
from tests.callvault.cli.test_recordings_cli import store_finished_call
from tests.callvault.control.keyenv import audit_events
from tests.conftest import module_topic_prefix
from tests.ports import free_port
from tests.streams.conftest import group_of

pytestmark = pytest.mark.integration

SUBJECT, OTHER, DESK = "+44 7700 900123", "+44 7700 900999", "+44 20 7946 0000"
STARTED = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
AS_CALLER = "c-d5a0c411"  # the subject calls the desk: recording, transcript, summary
AS_CALLEE = "c-d5a0ca11"  # the desk calls the subject back: recording, then shredded
UNRECORDED = "c-d5a0e0a1"  # the subject again, metadata only
NOT_THEM = "c-d5a0f0e2"  # someone else: recorded, must appear nowhere
TEXT = "I'd like to change my delivery address."
SUMMARY = "Caller changed the delivery address."


def _events(call_id: str, caller: str, callee: str, seed: int, minutes: int) -> list[dict]:
    started = STARTED + timedelta(minutes=minutes)
    call = call_events("acme", rng=random.Random(seed), started_at=started)
    # recording_enabled off: these recordings were archived directly (below), and the worker's
    # finisher must not amend them on the ENDED event while an export reads them
    return [{**e, "call_id": call_id, "sip_call_id": f"{call_id}@pbx", "caller_number": caller,
             "callee_number": callee, "recording_enabled": False} for e in call.events]  # fmt: skip


@pytest.fixture(scope="module")
def settings(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """One worker and one data set for the module: 4 calls in Kafka and ClickHouse, 3 of them
    archived in S3, the subject's callee call shredded."""
    with module_topic_prefix(stack_settings, "d") as prefix:
        yield from _setup(stack_settings, tmp_path_factory.mktemp("dsar"), prefix)


def _setup(stack_settings: Settings, tmp: Path, prefix: str) -> Iterator[Settings]:
    settings = stack_settings.model_copy(
        update={
            "home": tmp / "home",
            "kafka": stack_settings.kafka.model_copy(update={"topic_prefix": prefix}),
            "s3": stack_settings.s3.model_copy(update={"key_prefix": prefix.replace(".", "/")}),
            "clickhouse": stack_settings.clickhouse.model_copy(
                update={"dsn": SecretStr(f"chdb://{tmp / 'chdb'}")}
            ),
            "worker": stack_settings.worker.model_copy(update={"web_port": free_port()}),
        }
    )
    worker = WorkerProcess(settings, tmp / "worker.log")

    async def setup() -> None:
        await ensure_topics(settings)
        async with WorkspaceDirectory(settings) as d:
            await d.create("acme", region="eu", retention_days=30)
        for call, minutes in ((AS_CALLER, 0), (AS_CALLEE, 5), (NOT_THEM, 10)):
            summary = SUMMARY if call == AS_CALLER else None
            await store_finished_call(settings, tmp, call, STARTED + timedelta(minutes=minutes),
                                      [TEXT], summary=summary)  # fmt: skip
        await publish_events(settings, [
            *_events(AS_CALLER, SUBJECT, DESK, 1, 0), *_events(AS_CALLEE, DESK, SUBJECT, 2, 5),
            *_events(NOT_THEM, OTHER, DESK, 3, 10), *_events(UNRECORDED, SUBJECT, DESK, 4, 15),
        ])  # fmt: skip
        worker.start()
        await worker.wait_healthy()
        t = Topics(settings)
        await wait_caught_up(settings, group_of(settings), [t.ingest_metadata, t.sealed_metadata],
                             worker=worker)  # fmt: skip
        async with open_keys(settings) as keys:
            await keys.ring.shred_call("acme", AS_CALLEE)

    try:
        asyncio.run(setup())
        yield settings
    finally:
        worker.stop()


def _passphrase_file(tmp: Path, passphrase: str) -> Path:
    path = tmp / "passphrase"
    path.write_text(passphrase + "\n")
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_then_open_holds_every_call_of_the_number_and_nothing_else(settings, cli, tmp_path):
    archive = tmp_path / "subject.cvdsar"
    # any formatting of the number finds the same calls
    code, out, err = cli("dsar", "export", "--workspace", "acme", "--phone", "+447700-900 123",
                         "--out", str(archive), "--json")  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    passphrase = re.search(r"passphrase (\S+)", err).group(1)
    assert len(passphrase) == 24 and passphrase not in out
    assert result["calls"] == 3 and result["exported"] == 1
    assert result["erased"] == [AS_CALLEE] and result["missing"] == [UNRECORDED]
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert result["archive_sha256"] == _sha256(archive)
    sealed = archive.read_bytes()
    assert sealed.startswith(b"CVDSAR") and TEXT.encode() not in sealed and b"ID3" not in sealed
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]

    opened = tmp_path / "opened"
    got = _json(cli("dsar", "open", str(archive), "--out", str(opened), "--json",
                    "--passphrase-file", str(_passphrase_file(tmp_path, passphrase))))  # fmt: skip
    assert got["request_id"] == result["request_id"] and got["erased"] == [AS_CALLEE]
    manifest = json.loads((opened / "manifest.json").read_text())
    files = sorted(str(p.relative_to(opened)) for p in opened.rglob("*") if p.is_file())
    assert files == sorted([
        "calls.json", "manifest.json", f"calls/{AS_CALLER}/recording.mp3",
        f"calls/{AS_CALLER}/transcript.json", f"calls/{AS_CALLER}/summary.json",
    ])  # fmt: skip
    assert result["files"] == got["files"] == len(manifest["files"]) == 4  # all but itself
    for entry in manifest["files"]:
        path = opened / entry["path"]
        assert (_sha256(path), path.stat().st_size) == (entry["sha256"], entry["bytes"])
    assert manifest["subject"]["number_masked"] == mask_number(SUBJECT) == got["subject"]
    roles = {c["call_id"]: (c["role"], c["status"]) for c in manifest["calls"]}
    assert roles == {AS_CALLER: ("caller", "exported"), AS_CALLEE: ("callee", "erased"),
                     UNRECORDED: ("caller", "missing")}  # fmt: skip

    # the recording is the one `recordings get` serves; transcript and summary in clear
    mp3 = opened / f"calls/{AS_CALLER}/recording.mp3"
    _json(cli("recordings", "get", AS_CALLER, "--workspace", "acme", "--out",
              str(tmp_path / "direct.mp3"), "--json"))  # fmt: skip
    assert mp3.read_bytes() == (tmp_path / "direct.mp3").read_bytes()
    assert abs(sum(f.samples for f in iter_frames(mp3.read_bytes())) / 8000 - 2.0) < 0.3
    transcript = json.loads((opened / f"calls/{AS_CALLER}/transcript.json").read_text())
    assert [s["text"] for s in transcript["segments"]] == [TEXT]
    summary = json.loads((opened / f"calls/{AS_CALLER}/summary.json").read_text())
    assert [s["text"] for s in summary["segments"]] == [SUMMARY]

    # rows of every table, only for the subject's calls, never the number in clear
    rows = json.loads((opened / "calls.json").read_text())
    assert sorted(r["call_id"] for r in rows["calls"]) == sorted([AS_CALLER, AS_CALLEE,
                                                                 UNRECORDED])  # fmt: skip
    assert len(rows["call_events"]) == 9 and len(rows["tool_invocations"]) == 3
    everything = b"".join(p.read_bytes() for p in opened.rglob("*") if p.is_file())
    assert NOT_THEM.encode() not in everything
    assert normalise_number(SUBJECT).encode() not in everything
    assert stat.S_IMODE(mp3.stat().st_mode) == 0o600

    # audited, with the hash, never the number
    event = next(e for e in asyncio.run(audit_events(settings))
                 if e["action"] == "dsar.export" and e["details"].get("request_id")
                 == result["request_id"])  # fmt: skip
    pepper = settings.hash_pepper.get_secret_value().encode()
    assert event["outcome"] == "SUCCESS" and event["actor"]["id"].startswith("cli:")
    assert event["target"] == f"subject:{number_hash(pepper, 'acme', SUBJECT)[:16]}"
    assert event["details"]["archive_sha256"] == result["archive_sha256"]
    assert event["details"]["calls"] == "3" and event["details"]["erased"] == "1"
    flat = json.dumps(event, default=str)
    assert normalise_number(SUBJECT) not in flat and "7700 900123" not in flat


def test_a_wrong_passphrase_or_an_altered_archive_opens_nothing(settings, cli, tmp_path):
    archive = tmp_path / "subject.cvdsar"
    secret = _passphrase_file(tmp_path, "correct horse battery staple")
    code, _, err = cli("dsar", "export", "--workspace", "acme", "--phone", SUBJECT, "--out",
                       str(archive), "--passphrase-file", str(secret))  # fmt: skip
    assert code == 0, err
    assert "passphrase " not in err  # a passphrase of the caller's is never echoed
    # never overwritten
    code, _, err = cli("dsar", "export", "--workspace", "acme", "--phone", SUBJECT, "--out",
                       str(archive), "--passphrase-file", str(secret))  # fmt: skip
    assert code == EXIT_REFUSED and "already exists" in err

    wrong = tmp_path / "wrong"
    wrong.write_text("correct horse battery stapler\n")
    code, _, err = cli("dsar", "open", str(archive), "--out", str(tmp_path / "x"),
                       "--passphrase-file", str(wrong))  # fmt: skip
    assert code == EXIT_REFUSED and "wrong passphrase" in err
    data = archive.read_bytes()
    flipped = data[:-50] + bytes([data[-50] ^ 1]) + data[-49:]
    for name, damaged in (("truncated", data[:-100]), ("flipped", flipped)):
        (tmp_path / name).write_bytes(damaged)
        code, _, err = cli("dsar", "open", str(tmp_path / name), "--out",
                           str(tmp_path / f"{name}-out"),
                           "--passphrase-file", str(secret))  # fmt: skip
        assert code == EXIT_REFUSED and "damaged or was altered" in err, name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["subject.cvdsar", "passphrase", "wrong", "truncated", "flipped"]
    )  # nothing extracted, no partial directory left behind
    code, _, err = cli("dsar", "open", str(archive), "--out", str(tmp_path / "ok"),
                       "--passphrase-file", str(secret))  # fmt: skip
    assert code == 0, err


def test_export_needs_export_execute_and_a_refusal_is_audited(settings, cli, tmp_path):
    owner = _json(cli("user", "create", "olivia", "--workspace", "acme", "--role", "owner",
                      "--bootstrap", "--json"))  # fmt: skip
    member = _json(cli("user", "create", "mia", "--workspace", "acme", "--role", "member",
                       "--json", token=owner["token"]))  # fmt: skip
    secret = _passphrase_file(tmp_path, "a long enough passphrase")
    denied = tmp_path / "denied.cvdsar"
    code, _, err = cli("dsar", "export", "--workspace", "acme", "--phone", SUBJECT, "--out",
                       str(denied), "--passphrase-file", str(secret),
                       token=member["token"])  # fmt: skip
    assert code == EXIT_REFUSED and "export.execute" in err and not denied.exists()
    allowed = tmp_path / "allowed.cvdsar"
    result = _json(cli("dsar", "export", "--workspace", "acme", "--phone", SUBJECT, "--out",
                       str(allowed), "--passphrase-file", str(secret), "--json",
                       token=owner["token"]))  # fmt: skip
    events = [(e["action"], e["actor"]["id"], e["outcome"], e["details"].get("request_id"))
              for e in asyncio.run(audit_events(settings))
              if e["action"] == "dsar.export"]  # fmt: skip
    assert ("dsar.export", "olivia", "SUCCESS", result["request_id"]) in events
    assert any(who == "mia" and outcome == "DENIED" for _, who, outcome, _ in events)
    assert not any(who == "mia" and outcome == "SUCCESS" for _, who, outcome, _ in events)
