"""The RFC 5425 syslog sink against a real rsyslog (Debian rsyslog + rsyslog-gnutls), started
by these fixtures with their own config, work dir, pid file and port."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callvault.audit import audit_event
from callvault.devstack.pki import Pki, ensure_ca, ensure_leaf
from sinks.errors import SinkUnavailable
from sinks.siem.formats import Payload
from sinks.siem.retry import Backoff
from sinks.siem.syslog import SyslogTlsSink, client_tls_context
from tests.ports import free_port
from tests.sinks.siem.parse import parse_cef, parse_rfc5424
from tests.sinks.siem.rsyslog import Rsyslog

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("rsyslogd") is None, reason="rsyslog not installed"),
]

SD_ID = "callvault@32473"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return ensure_ca(tmp_path_factory.mktemp("siem-pki"))


def _rsyslog(tmp: Path, pki: Pki, auth_mode: str) -> Iterator[Rsyslog]:
    server = Rsyslog(tmp, pki, free_port(), auth_mode=auth_mode)
    server.write_config()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Rsyslog]:
    yield from _rsyslog(tmp_path_factory.mktemp("rsyslog-anon"), pki, "anon")


@pytest.fixture(scope="module")
def rsyslog_mtls(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Rsyslog]:
    yield from _rsyslog(tmp_path_factory.mktemp("rsyslog-mtls"), pki, "x509/certvalid")


@pytest.fixture
def rsyslog_crashy(tmp_path: Path, pki: Pki) -> Iterator[Rsyslog]:
    """Its own instance: the test kills and restarts it."""
    yield from _rsyslog(tmp_path, pki, "anon")


def make_sink(
    server: Rsyslog,
    *,
    payload: Payload = "cef",
    client_cert: Path | None = None,
    deadline: float = 20.0,
) -> SyslogTlsSink:
    return SyslogTlsSink(
        "127.0.0.1",
        server.port,
        ssl_context=client_tls_context(server.pki.ca_file, client_cert),
        payload=payload,
        hostname="test-node",
        backoff=Backoff(initial=0.02, cap=0.2, deadline=deadline),
    )


def make_events(n: int, tag: str) -> list[dict[str, Any]]:
    return [
        audit_event(
            "trunk.rotate" if i % 2 else "recording.decrypt",
            actor_kind="USER",
            actor_id=f'user"{i}]\\',
            outcome=("SUCCESS", "DENIED", "FAILURE")[i % 3],
            workspace_id=f"ws-{tag}",
            region="eu",
            target=f"t|{i}=x",
            details={"n": str(i), "note": "grüße" if i % 4 == 0 else "plain"},
        )
        for i in range(n)
    ]


def received(server: Rsyslog) -> dict[str, list[dict[str, Any]]]:
    """eventId -> parsed messages (a list: duplicates are allowed)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for line in server.lines():
        msg = parse_rfc5424(line)
        out.setdefault(msg["sd"][SD_ID]["eventId"], []).append(msg)
    return out


async def wait_for_ids(server: Rsyslog, ids: set[str], within: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        got = received(server)
        if ids <= set(got) or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("payload", ["cef", "json"])
async def test_events_arrive_parseable(rsyslog: Rsyslog, payload: Payload) -> None:
    evs = make_events(25, payload)
    sink = make_sink(rsyslog, payload=payload)
    for ev in evs[:10]:
        sink.add(ev)
    await sink.flush()
    for ev in evs[10:]:
        sink.add(ev)
    await sink.flush()
    await sink.close()
    got = await wait_for_ids(rsyslog, {e["event_id"] for e in evs})
    for ev in evs:
        assert ev["event_id"] in got, "event lost"
        msg = got[ev["event_id"]][0]
        assert msg["msgid"] == ev["action"] and msg["hostname"] == "test-node"
        assert int(msg["pri"]) == 80 + {"SUCCESS": 6, "FAILURE": 5, "DENIED": 4}[ev["outcome"]]
        sd = msg["sd"][SD_ID]
        assert sd["actor"] == ev["actor"]["id"] and sd["target"] == ev["target"]
        assert sd["workspace"] == ev["workspace_id"] and sd["outcome"] == ev["outcome"]
        assert msg["bom"] == (ev["details"]["note"] != "plain")
        if payload == "json":
            body = json.loads(msg["msg"])
            assert body["event_id"] == ev["event_id"] and body["details"] == ev["details"]
        else:
            header, ext = parse_cef(msg["msg"])
            assert header[4] == ev["action"] and ext["externalId"] == ev["event_id"]
            assert json.loads(ext["msg"]) == ev["details"]
            assert ext["cs3"] == ev["target"] and ext["suser"] == ev["actor"]["id"]


async def test_mutual_tls_requires_client_cert(rsyslog_mtls: Rsyslog, pki: Pki) -> None:
    anonymous = make_sink(rsyslog_mtls, deadline=1.0)
    rejected = make_events(2, "anon-client")
    for ev in rejected:
        anonymous.add(ev)
    with pytest.raises(SinkUnavailable):
        await anonymous.flush()
    assert anonymous.event_ids == [e["event_id"] for e in rejected]  # kept, not lost

    cert = ensure_leaf(pki, "callvault-siem-client", ["callvault-siem-client"], client=True)
    authenticated = make_sink(rsyslog_mtls, client_cert=cert)
    accepted = make_events(5, "cert-client")
    for ev in accepted:
        authenticated.add(ev)
    await authenticated.flush()
    await authenticated.close()
    got = await wait_for_ids(rsyslog_mtls, {e["event_id"] for e in accepted})
    assert {e["event_id"] for e in accepted} <= set(got)
    assert not {e["event_id"] for e in rejected} & set(got)


async def test_rsyslog_crash_and_restart_loses_nothing(
    rsyslog_crashy: Rsyslog, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = rsyslog_crashy
    sink = make_sink(server, payload="json")
    batches = [make_events(7, f"b{n}") for n in range(6)]
    sent: set[str] = set()

    async def send(batch: list[dict[str, Any]]) -> None:
        for ev in batch:
            sink.add(ev)
            sent.add(ev["event_id"])
        await sink.flush()

    await send(batches[0])
    await send(batches[1])
    got = await wait_for_ids(server, sent)
    assert sent <= set(got)

    server.kill()  # crash: no graceful TLS close
    for ev in batches[2]:
        sink.add(ev)
        sent.add(ev["event_id"])
    pending = asyncio.create_task(sink.flush())  # finds the connection dead, retries
    await asyncio.sleep(0.3)  # the outage lasts a few backoff rounds (its length, not a sync)
    await asyncio.to_thread(server.start)  # same port, same output file
    await pending
    await send(batches[3])
    # the SIEM's own durability is not the client's to prove: rsyslog's in-memory queue loses
    # what it accepted but had not written yet, so crash it only once everything is on disk
    got = await wait_for_ids(server, sent)
    assert sent <= set(got)

    # second crash, and this time the client misses the FIN: it writes into the dead connection
    server.kill()
    real_healthy = sink._healthy
    lie = [True]
    monkeypatch.setattr(sink, "_healthy", lambda: lie.pop() if lie else real_healthy())
    for ev in batches[4]:
        sink.add(ev)
        sent.add(ev["event_id"])
    pending = asyncio.create_task(sink.flush())
    await asyncio.sleep(0.3)
    await asyncio.to_thread(server.start)
    await pending  # either saw the reset, or "succeeded" into the dead socket
    await send(batches[5])  # ... in which case this flush re-sends batch 4 first
    await sink.close()

    got = await wait_for_ids(server, sent)
    missing = sent - set(got)
    lost = sorted({n for n, b in enumerate(batches) for e in b if e["event_id"] in missing})
    assert not missing, f"{len(missing)} audit events lost, from batches {lost}"
    assert sink.reconnects >= 1
    dupes = sum(len(v) - 1 for v in got.values())
    assert dupes <= len(batches[1]) + len(batches[3]) + len(batches[4])  # unconfirmed ones
