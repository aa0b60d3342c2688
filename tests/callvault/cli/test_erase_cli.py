"""Erasure on the real stack: ``callvault erase subject|workspace`` through a running worker, the
signed certificate it issues, ``callvault certificate verify`` (and a tampered one failing), the
denial paths, and the invariant: afterwards nothing of the erased scope exists in any readable
form, while everything outside it is untouched."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from callvault.analytics_client import query
from callvault.cli.main import EXIT_REFUSED
from callvault.control.keys import open_keys
from callvault.control.workspaces import WorkspaceDirectory
from callvault.simulate import publish_records, simulated_calls
from callvault.topics import ensure_topics
from callvault.worker_process import wait_caught_up
from sinks.objects import layout
from sinks.objects.store import ObjectStore
from tests.callvault.cli.helpers import ok_json as _json
from tests.callvault.control.keyenv import audit_events
from tests.streams.conftest import group_of, isolated_settings, worker_factory  # noqa: F401
from tests.streams.test_sealing_slice import _all_topics, _chunk, _segment

pytestmark = pytest.mark.integration

SUBJECT = "+447700900123"
OTHER = "+447700900999"
TABLES = ("calls", "call_events", "tool_invocations", "transcripts")


@pytest.fixture
def settings(stack_settings, tmp_path):
    return isolated_settings(stack_settings, tmp_path)


def _with_numbers(call: Any, caller: str, callee: str) -> list[dict[str, Any]]:
    return [{**e, "caller_number": caller, "callee_number": callee} for e in call.events]


async def _feed(settings) -> dict[str, Any]:
    """acme: the subject calls in (c1, recorded), is called (c2); someone else calls (c3).
    beta: the subject calls in too (c4): another workspace, not part of acme's erasure."""
    await ensure_topics(settings)
    async with WorkspaceDirectory(settings) as d:
        await d.create("acme", region="eu", retention_days=30)
        await d.create("beta", region="eu", retention_days=30)
    c1, c2, c3 = simulated_calls("acme", 3, seed=71)
    [c4] = simulated_calls("beta", 1, seed=72)
    events = (
        _with_numbers(c1, SUBJECT, "+442071838750") + _with_numbers(c2, "+442071838750", SUBJECT)
        + _with_numbers(c3, OTHER, "+442071838750") + _with_numbers(c4, SUBJECT, "+442071838750")
    )  # fmt: skip
    start = c1.events[0]["call_started_at"]
    ended = next(e for e in events if e["call_id"] == c1.call_id and e["kind"] == "ENDED")
    ended["audio_chunks"] = {"CALLER": 1}
    await publish_records(settings, "ingest.metadata", "CallEvent", events)
    await publish_records(
        settings, "ingest.audio", "AudioChunk", [_chunk(c1.call_id, 0, started=start)]
    )
    await publish_records(
        settings, "ingest.transcript", "TranscriptSegment",
        [_segment(c1.call_id, "my account number is ...", started=start)],
    )  # fmt: skip
    return {"c1": c1.call_id, "c2": c2.call_id, "c3": c3.call_id, "c4": c4.call_id,
            "start": start}  # fmt: skip


def _count(settings, table: str, where: str) -> int:
    sql = f"SELECT count() FROM callvault.{table} FINAL WHERE {where}"  # one row per version key
    return int(query(settings, sql).rows[0][0])


def _wait(what: str, ok, worker, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ok():
        assert time.monotonic() < deadline, f"{what}:\n{worker.log_tail()}"
        time.sleep(0.2)


def _objects(settings, prefix: str) -> list[str]:
    store = ObjectStore(settings)
    try:
        return [o.key for o in asyncio.run(store.list_objects(prefix))]
    finally:
        store.close()


async def _destroyed(settings, ws: str, call: str | None) -> bool:
    async with open_keys(settings) as keys:
        await keys.store.sync()
        if call is None:
            records = await keys.store.by_workspace(ws, scope="WORKSPACE")
        else:
            records = await keys.store.by_call(ws, call)
        return bool(records) and all(r["destroyed"] for r in records)


def test_subject_and_workspace_erasure_with_signed_certificates(
    settings,
    cli,
    users,
    worker_factory,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
):
    calls = asyncio.run(_feed(settings))
    c1, c2, c3, c4 = calls["c1"], calls["c2"], calls["c3"], calls["c4"]
    worker = worker_factory(settings)
    asyncio.run(worker.wait_healthy())
    asyncio.run(wait_caught_up(settings, group_of(settings), _all_topics(settings), worker=worker))
    recording = layout.call_prefix("acme", c1, calls["start"])
    _wait("recording stored", lambda: len(_objects(settings, recording)) >= 3, worker)
    for table in ("calls", "transcripts"):
        assert _count(settings, table, f"call_id = '{c1}'") >= 1

    # who may: an analyst lacks erasure.execute; an admin lacks workspace.manage
    tokens = users("acme", olivia="owner", ana="analyst", adam="admin")
    owner, analyst, admin = tokens["olivia"], tokens["ana"], tokens["adam"]
    code, _, err = cli("erase", "subject", "--workspace", "acme", "--phone", SUBJECT,
                       token=analyst)  # fmt: skip
    assert code == EXIT_REFUSED and "lacks erasure.execute" in err
    code, _, err = cli("erase", "workspace", "acme", "--yes", token=admin)
    assert code == EXIT_REFUSED and "lacks workspace.manage" in err
    code, _, err = cli("erase", "subject", "--workspace", "beta", "--phone", SUBJECT, token=owner)
    assert code == EXIT_REFUSED and "not a member of workspace 'beta'" in err

    # queries of a token holder are confined to their workspace by the engine
    sql = "SELECT count() AS n FROM callvault.calls FINAL"
    assert _json(cli("query", "--workspace", "acme", "--json", sql, token=analyst)) == [{"n": 3}]
    assert _count(settings, "calls", "1 = 1") == 4  # the operator's unscoped view: beta too
    # and so is the bill: the analyst (billing.view) sees acme's calls and minutes only
    bill = _json(cli("billing", "usage", "--workspace", "acme", "--from", "2000-01-01", "--json",
                     token=analyst))  # fmt: skip
    assert bill["total"]["calls"] == 3 and bill["total"]["minutes"] > 0
    code, _, err = cli("billing", "usage", "--workspace", "acme", token=admin)
    assert code == 0, err  # admins hold billing.view; members and auditors do not

    # the subject's erasure: both of their calls, as caller and as callee, in acme only
    cert_file = tmp_path / "subject.json"
    result = _json(cli("erase", "subject", "--workspace", "acme", "--phone", SUBJECT,
                       "--reason", "DSR-42", "--out", str(cert_file), "--json", "--timeout",
                       "120", token=admin))  # fmt: skip
    assert result["status"] == "erased" and result["rows_deleted"]["callvault.calls"] == 2
    assert result["objects_deleted"] >= 3 and result["keys_shredded"] >= 2
    doc = json.loads(cert_file.read_text())
    s3_items = {i["locator"] for i in doc["items"] if i["store"] == "s3"}
    assert any(f"/{c1}/recording.mp3.cvs" in loc for loc in s3_items)
    assert all(i["version"] for i in doc["items"] if i["store"] == "s3")
    assert SUBJECT not in cert_file.read_text() and SUBJECT not in json.dumps(result)
    for table in TABLES:
        assert _count(settings, table, f"call_id IN ('{c1}', '{c2}')") == 0, table
    assert _count(settings, "calls", f"call_id IN ('{c3}', '{c4}')") == 2  # others untouched
    assert _objects(settings, recording) == []
    assert _objects(settings, layout.staging_prefix("acme", c1)) == []
    assert asyncio.run(_destroyed(settings, "acme", c1))
    assert asyncio.run(_destroyed(settings, "acme", c2))
    assert not asyncio.run(_destroyed(settings, "acme", c3))

    # the certificate verifies offline; any edit (a count, a removed item) does not
    code, out, err = cli("certificate", "verify", str(cert_file))
    assert code == 0 and "signature valid" in out, err
    tampered = tmp_path / "tampered.json"
    for edit in (lambda d: d["items"][0].update(count=d["items"][0]["count"] + 1),
                 lambda d: d["items"].pop(), lambda d: d.update(workspace_id="beta")):  # fmt: skip
        changed = json.loads(cert_file.read_text())
        edit(changed)
        tampered.write_text(json.dumps(changed))
        code, _, err = cli("certificate", "verify", str(tampered))
        assert code == EXIT_REFUSED and "does not verify" in err
    # and is on control.certificates for whoever may read the audit trail
    fetched = _json(cli("certificate", "get", result["request_id"], "--json", token=owner))
    assert fetched == doc
    code, _, err = cli("certificate", "get", result["request_id"], token=analyst)
    assert code == EXIT_REFUSED and "lacks audit.read" in err

    # re-running is safe: nothing left to remove, a new certificate says so
    again = _json(cli("erase", "subject", "--workspace", "acme", "--phone", SUBJECT, "--json",
                      "--out", str(tmp_path / "again.json"), token=admin))  # fmt: skip
    assert again["objects_deleted"] == 0 and again["rows_deleted"] == {}

    # the workspace's erasure (contract termination), by an owner: its trunks are revoked too
    trunk = _json(cli("trunk", "create", "pbx9", "--workspace", "acme", "--json", token=owner))
    result = _json(cli("erase", "workspace", "acme", "--yes", "--json", "--out",
                       str(tmp_path / "ws.json"), token=owner))  # fmt: skip
    assert result["rows_deleted"]["callvault.calls"] == 1  # c3 was all that was left
    for table in TABLES:
        assert _count(settings, table, "workspace_id = 'acme'") == 0, table
    assert _objects(settings, layout.workspace_prefix("acme")) == []
    assert _objects(settings, layout.staging_workspace_prefix("acme")) == []
    assert asyncio.run(_destroyed(settings, "acme", None))
    assert _count(settings, "calls", "workspace_id = 'beta'") == 1
    code, _, _ = cli("certificate", "verify", str(tmp_path / "ws.json"))
    assert code == 0
    [cred] = [t for t in _json(cli("trunk", "list", "--json")) if t["trunk_id"] == "pbx9"]
    assert cred["username"] == trunk["username"] and cred["status"] == "REVOKED"
    code, _, err = cli("workspace", "create", "acme", "--region", "eu")
    assert code == EXIT_REFUSED and "erased workspace" in err
    listed = _json(cli("certificate", "list", "--workspace", "acme", "--json", token=owner))
    assert [r["status"] for r in listed] == ["certified"] * 3

    # the owner's export of the audit chain holds acme's events only, the erasures among them
    def exported() -> list[dict[str, Any]]:
        code, out, err = cli("audit", "export", "--workspace", "acme", token=owner)
        assert code == 0, err
        return [json.loads(line) for line in out.splitlines()]

    _wait("erasures in the chain", lambda: sum(
        e["action"] == "erasure.complete" for e in exported()) == 3, worker)  # fmt: skip
    assert {e["workspace_id"] for e in exported()} == {"acme"}

    events = asyncio.run(audit_events(settings))
    actions = [(e["action"], e["outcome"]) for e in events if e["workspace_id"] == "acme"]
    assert actions.count(("erasure.request", "SUCCESS")) == 3
    assert actions.count(("erasure.complete", "SUCCESS")) == 3
    assert ("erasure.request", "DENIED") in actions
    assert ("calls.query", "SUCCESS") in actions
    assert ("billing.view", "SUCCESS") in actions
    assert all(SUBJECT not in json.dumps(e, default=str) for e in events)
