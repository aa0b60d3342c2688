"""The Splunk HEC sink against a local HEC stand-in (Splunk cannot run here).

The stand-in validates every request as Splunk documents it: POST to /services/collector/event,
``Authorization: Splunk <token>``, a body of JSON event objects back to back (optionally gzip),
each with the documented fields. It answers like HEC (``{"text":"Success","code":0}``) and can be
told to fail first, to prove retries lose nothing.
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from callvault.audit import audit_event
from sinks.errors import SinkRejected, SinkUnavailable
from sinks.siem.hec import HecSink
from sinks.siem.retry import Backoff
from tests.ports import free_port
from tests.sinks.siem.parse import check_hec_event, parse_hec_body

TOKEN = "12345678-1234-1234-1234-1234567890AB"
FAST = Backoff(initial=0.01, cap=0.05, deadline=5.0)


@dataclass
class FakeHec:
    port: int
    fail_with: list[int] = field(default_factory=list)  # statuses to answer before succeeding
    received: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    gzipped: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.headers.get("Authorization") != f"Splunk {TOKEN}":
            return web.json_response({"text": "Invalid token", "code": 4}, status=403)
        body = await request.read()
        if request.path != "/services/collector/event" or request.method != "POST":
            return web.json_response({"text": "Not found", "code": 404}, status=404)
        if request.headers.get("Content-Encoding") == "gzip":
            self.gzipped += 1
            if body[:2] == b"\x1f\x8b":  # aiohttp usually inflates it already
                body = gzip.decompress(body)
        try:
            objs = parse_hec_body(body)
            for obj in objs:
                check_hec_event(obj)
        except (AssertionError, ValueError) as exc:
            return web.json_response({"text": f"Invalid data format: {exc}", "code": 6}, status=400)
        if self.fail_with:
            status = self.fail_with.pop(0)
            return web.json_response({"text": "Server is busy", "code": 9}, status=status)
        self.received.extend(objs)
        return web.json_response({"text": "Success", "code": 0})

    @property
    def ids(self) -> list[str]:
        return [o["event"]["event_id"] for o in self.received]


@pytest.fixture
async def hec() -> AsyncIterator[FakeHec]:
    fake = FakeHec(free_port())
    app = web.Application()
    app.router.add_post("/services/collector/event", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", fake.port)
    await site.start()
    try:
        yield fake
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def events(n: int) -> list[dict[str, Any]]:
    return [
        audit_event("recording.decrypt", actor_kind="USER", actor_id=f"u{i}", workspace_id="ws")
        for i in range(n)
    ]


def sink(hec: FakeHec, session: aiohttp.ClientSession, **kw: Any) -> HecSink:
    return HecSink(
        f"http://127.0.0.1:{hec.port}", SecretStr(TOKEN), session=session, backoff=FAST, **kw
    )


@pytest.mark.parametrize("use_gzip", [False, True])
async def test_batch_delivered(
    hec: FakeHec, session: aiohttp.ClientSession, use_gzip: bool
) -> None:
    s = sink(hec, session, gzip=use_gzip, host="node-1", index="audit")
    evs = events(5)
    for ev in evs:
        s.add(ev)
    await s.flush()
    assert len(s) == 0 and hec.requests == 1
    assert hec.ids == [e["event_id"] for e in evs]
    assert {o["index"] for o in hec.received} == {"audit"}
    assert hec.gzipped == (1 if use_gzip else 0)


async def test_503_then_success_retries_without_loss(
    hec: FakeHec, session: aiohttp.ClientSession
) -> None:
    hec.fail_with = [503, 429, 503]
    s = sink(hec, session)
    evs = events(4)
    for ev in evs:
        s.add(ev)
    await s.flush()
    assert hec.requests == 4
    assert hec.ids == [e["event_id"] for e in evs]


async def test_outage_past_deadline_keeps_buffer(
    hec: FakeHec, session: aiohttp.ClientSession
) -> None:
    hec.fail_with = [503] * 1000
    s = HecSink(
        f"http://127.0.0.1:{hec.port}",
        SecretStr(TOKEN),
        session=session,
        backoff=Backoff(initial=0.01, cap=0.02, deadline=0.2),
    )
    evs = events(3)
    for ev in evs:
        s.add(ev)
    with pytest.raises(SinkUnavailable) as err:
        await s.flush()
    assert err.value.retriable
    assert s.event_ids == [e["event_id"] for e in evs]  # nothing lost: the caller retries
    hec.fail_with = []
    await s.flush()
    assert hec.ids == [e["event_id"] for e in evs]


async def test_connection_refused_is_unavailable(session: aiohttp.ClientSession) -> None:
    s = HecSink(
        f"http://127.0.0.1:{free_port()}",
        SecretStr(TOKEN),
        session=session,
        backoff=Backoff(initial=0.01, cap=0.02, deadline=0.1),
    )
    s.add(events(1)[0])
    with pytest.raises(SinkUnavailable):
        await s.flush()
    assert len(s) == 1


async def test_bad_token_is_rejected_and_not_leaked(
    hec: FakeHec, session: aiohttp.ClientSession
) -> None:
    secret = "wrong-token-do-not-log"
    s = HecSink(f"http://127.0.0.1:{hec.port}", SecretStr(secret), session=session, backoff=FAST)
    s.add(events(1)[0])
    with pytest.raises(SinkRejected) as err:
        await s.flush()
    assert not err.value.retriable
    assert secret not in str(err.value) and secret not in repr(s.__dict__)
    assert hec.requests == 1 and len(s) == 1  # kept for the caller to dead-letter


async def test_400_is_rejected(hec: FakeHec, session: aiohttp.ClientSession) -> None:
    hec.fail_with = [400]
    s = sink(hec, session)
    s.add(events(1)[0])
    with pytest.raises(SinkRejected):
        await s.flush()
