"""The SIEM fan-out of ``audit.events`` on the real stack: a real rsyslog (RFC 5425 over TLS), the
local Splunk HEC stand-in of tests/sinks/siem, and Kafka for ``siem.ocsf`` and dead letters.

The handler tests run :class:`streams.siem.SiemFanout` in this process with a real faust producer
and real faust events; the worker test runs the whole worker (both agents on ``audit.events``)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import faust
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from faust.events import Event
from faust.types.tuples import Message
from pydantic import SecretStr

from callvault.analytics_client import query
from callvault.audit import encode_audit
from callvault.devstack.pki import Pki, ensure_ca
from callvault.kafka_client import kafka_options
from callvault.settings import Settings
from callvault.topics import Topics, ensure_topics
from callvault.worker_process import committed_and_end, wait_caught_up
from schemas.codec import get_codec
from sinks.siem.hec import HecSink
from sinks.siem.retry import Backoff
from sinks.siem.syslog import SyslogTlsSink, client_tls_context
from streams.app import faust_config
from streams.runtime import Runtime
from streams.siem import SiemFanout
from tests.kafka_read import read_all
from tests.ports import free_port
from tests.sinks.siem.rsyslog import Rsyslog
from tests.sinks.siem.test_hec import TOKEN, FakeHec
from tests.sinks.siem.test_syslog_rsyslog import _rsyslog, make_events, wait_for_ids
from tests.streams.conftest import group_of, isolated_settings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("rsyslogd") is None, reason="rsyslog not installed"),
]

POISON = "siem.poison"  # an action the HEC stand-in refuses, like Splunk refuses a bad event
FAST = Backoff(initial=0.02, cap=0.1, deadline=0.3)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return ensure_ca(tmp_path_factory.mktemp("siem-fanout-pki"))


@pytest.fixture
def rsyslog(tmp_path: Path, pki: Pki) -> Iterator[Rsyslog]:
    """Its own instance per test: the outage tests stop and restart it."""
    yield from _rsyslog(tmp_path / "rsyslog", pki, "anon")


@dataclass
class PickyHec(FakeHec):
    """The HEC stand-in, refusing (400, as Splunk does for an invalid event) any request that
    holds a :data:`POISON` event, so a batch with one is refused as a whole."""

    async def handle(self, request: web.Request) -> web.Response:
        if POISON.encode() in await request.read():
            self.requests += 1
            return web.json_response({"text": "Invalid data format", "code": 6}, status=400)
        return await super().handle(request)


@pytest.fixture
async def hec() -> AsyncIterator[PickyHec]:
    fake = PickyHec(free_port())
    app = web.Application()
    app.router.add_post("/services/collector/event", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", fake.port).start()
    try:
        yield fake
    finally:
        await runner.cleanup()


@pytest.fixture
async def siem_settings(stack_settings: Settings, tmp_path: Path) -> Settings:
    settings = isolated_settings(stack_settings, tmp_path, retry_max_backoff_s=0.3)
    topics = Topics(settings)
    wanted = ("audit.events", "siem.ocsf", "deadletter.siem")
    await ensure_topics(settings, [topics.specs[n] for n in wanted])
    return settings


@pytest.fixture
async def runtime(siem_settings: Settings) -> AsyncIterator[Runtime]:
    """A worker's runtime with a started faust producer (acks=all), no agents."""
    app = faust.App(f"siem-test-{uuid.uuid4().hex[:8]}", **faust_config(siem_settings))
    rt = Runtime(siem_settings, app)
    await app.producer.start()
    try:
        yield rt
    finally:
        await app.producer.stop()


def as_events(app: faust.App, topic: str, values: list[bytes]) -> list[Event]:
    """Real faust events, as the agent's stream hands them to the handler."""
    out = []
    for offset, value in enumerate(values):
        msg = Message(topic, 0, offset, time.time(), 0, [], b"k", value, None)
        out.append(Event(app, b"k", value, [], msg))
    return out


def encoded(evs: list[dict[str, Any]]) -> list[bytes]:
    return [encode_audit(e)[1] for e in evs]


def syslog_sink(server: Rsyslog) -> SyslogTlsSink:
    return SyslogTlsSink(
        "127.0.0.1",
        server.port,
        ssl_context=client_tls_context(server.pki.ca_file),
        payload="json",
        hostname="fanout-test",
        backoff=FAST,
    )


async def dead_letters(settings: Settings) -> list[dict[str, Any]]:
    msgs = await read_all(settings, Topics(settings).deadletter_siem)
    return [get_codec().decode("DeadLetter", m.value) for m in msgs]


async def ocsf_records(settings: Settings) -> dict[bytes, dict[str, Any]]:
    return {
        m.key: json.loads(m.value) for m in await read_all(settings, Topics(settings).siem_ocsf)
    }


@pytest.fixture
async def hec_sink(hec: PickyHec) -> AsyncIterator[HecSink]:
    async with aiohttp.ClientSession() as session:
        yield HecSink(
            f"http://127.0.0.1:{hec.port}", SecretStr(TOKEN), session=session, backoff=FAST
        )


def retries(rt: Runtime, destination: str) -> float:
    value = rt.metrics.registry.get_sample_value(
        "callvault_sink_retries_total", {"stage": f"siem.{destination}"}
    )
    return value or 0.0


async def test_every_event_reaches_every_destination_and_bad_input_is_dead_lettered(
    runtime: Runtime, rsyslog: Rsyslog, hec: PickyHec, hec_sink: HecSink
) -> None:
    rt = runtime
    fanout = SiemFanout(rt, destinations={"syslog": syslog_sink(rsyslog), "hec": hec_sink})
    good = make_events(12, "all")
    region_less = make_events(1, "control")[0] | {"region": None, "workspace_id": None}
    foreign = make_events(1, "na")[0] | {"region": "na"}
    values = [
        *encoded(good[:6]),
        b"\x00not avro",
        *encoded([foreign, region_less]),
        *encoded(good[6:]),
    ]
    await fanout.handle(as_events(rt.app, rt.topics.audit_events, values))
    await fanout.close()

    ids = {e["event_id"] for e in [*good, region_less]}
    assert {o["event"]["event_id"] for o in hec.received} == ids
    got = await wait_for_ids(rsyslog, ids)
    assert set(got) == ids  # and nothing of the foreign region
    ocsf = await ocsf_records(rt.settings)
    assert set(ocsf) == {i.encode() for i in ids}
    assert all(rec["metadata"]["uid"] == key.decode() for key, rec in ocsf.items())
    dead = await dead_letters(rt.settings)
    # another region's event is passed over (its region's fan-out sends it), not refused
    assert [d["reason"].split(":")[0] for d in dead] == ["undecodable"]
    assert {d["stage"] for d in dead} == {"siem.fanout"}
    assert {d["offset"] for d in dead} == {6}
    assert dead[0]["value"] in values  # kept byte for byte, so it can be replayed


async def test_a_rejected_record_is_dead_lettered_and_the_rest_delivered(
    runtime: Runtime, rsyslog: Rsyslog, hec: PickyHec, hec_sink: HecSink
) -> None:
    rt = runtime
    fanout = SiemFanout(rt, destinations={"syslog": syslog_sink(rsyslog), "hec": hec_sink})
    evs = make_events(6, "rej")
    evs[2]["action"] = POISON
    await fanout.handle(as_events(rt.app, rt.topics.audit_events, encoded(evs)))
    await fanout.close()

    ids = {e["event_id"] for e in evs}
    assert {o["event"]["event_id"] for o in hec.received} == ids - {evs[2]["event_id"]}
    assert set(await wait_for_ids(rsyslog, ids)) == ids  # syslog took the record HEC refused
    assert set(await ocsf_records(rt.settings)) == {i.encode() for i in ids}
    (dead,) = await dead_letters(rt.settings)
    assert dead["reason"].startswith("rejected_by_hec: Splunk HEC rejected 1 events: HTTP 400")
    assert dead["offset"] == 2 and get_codec().decode("AuditEvent", dead["value"]) == evs[2]


async def test_a_siem_outage_pauses_the_batch_until_it_is_back(
    runtime: Runtime, rsyslog: Rsyslog
) -> None:
    rt = runtime
    fanout = SiemFanout(rt, destinations={"syslog": syslog_sink(rsyslog)})
    first, during = make_events(5, "before"), make_events(9, "during")
    await fanout.handle(as_events(rt.app, rt.topics.audit_events, encoded(first)))
    rsyslog.stop()

    batch = asyncio.create_task(
        fanout.handle(as_events(rt.app, rt.topics.audit_events, encoded(during)))
    )
    deadline = time.monotonic() + 15
    while retries(rt, "syslog") < 2:  # the sink gave up twice, the fan-out kept trying
        assert not batch.done(), "the batch returned while the SIEM was down"
        assert time.monotonic() < deadline, "no retry reported"
        await asyncio.sleep(0.05)
    assert not batch.done()
    await asyncio.to_thread(rsyslog.start)
    await asyncio.wait_for(batch, 15)
    await fanout.close()

    ids = {e["event_id"] for e in first + during}
    assert set(await wait_for_ids(rsyslog, ids)) == ids
    assert await dead_letters(rt.settings) == []


# --- the whole worker ------------------------------------------------------------------------


async def produce_audit(settings: Settings, evs: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(**kafka_options(settings), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        topic = Topics(settings).audit_events
        for key, value in map(encode_audit, evs):
            await (await producer.send(topic, key=key, value=value))
    finally:
        await producer.stop()


def worker_retries(settings: Settings, destination: str) -> float:
    url = f"http://{settings.worker.web_host}:{settings.worker.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    prefix = f'callvault_sink_retries_total{{stage="siem.{destination}"}} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


async def test_worker_fans_audit_events_out_and_survives_a_syslog_outage(
    stack_settings: Settings, tmp_path: Path, rsyslog: Rsyslog, hec: PickyHec, worker_factory: Any
) -> None:
    base = isolated_settings(stack_settings, tmp_path, retry_max_backoff_s=0.5)
    siem = base.siem.model_copy(
        update={
            "syslog_enabled": True,
            "syslog_port": rsyslog.port,
            "syslog_format": "cef",
            "syslog_ca_file": rsyslog.pki.ca_file,
            "hec_enabled": True,
            "hec_url": f"http://127.0.0.1:{hec.port}",
            "hec_token": SecretStr(TOKEN),
        }
    )
    settings = base.model_copy(update={"siem": siem})
    await ensure_topics(settings)
    audit_topic = Topics(settings).audit_events
    first = make_events(20, "first")
    await produce_audit(settings, first)
    worker = worker_factory(settings)
    await worker.wait_healthy()
    # committed == end only once *both* agents on audit.events acknowledged every event
    await wait_caught_up(settings, group_of(settings), [audit_topic], worker=worker)
    ids = {e["event_id"] for e in first}
    assert set(await wait_for_ids(rsyslog, ids)) == ids
    assert set(await ocsf_records(settings)) == {i.encode() for i in ids}
    assert {o["event"]["event_id"] for o in hec.received} == ids
    rows = query(settings, "SELECT event_id FROM callvault.audit_log FINAL").rows
    assert {r[0] for r in rows} == ids  # the audit-log writer saw every event too

    # outage: the SIEM is down while events arrive; they wait, unacknowledged
    rsyslog.stop()
    during = make_events(15, "during")
    await produce_audit(settings, during)
    deadline = time.monotonic() + 20
    while await asyncio.to_thread(worker_retries, settings, "syslog") < 2:
        assert time.monotonic() < deadline, f"no syslog retry reported:\n{worker.log_tail()}"
        await asyncio.sleep(0.1)
    committed, ends = await committed_and_end(settings, group_of(settings), [audit_topic])
    assert all(committed[tp] < end for tp, end in ends.items()), "acknowledged during the outage"

    await asyncio.to_thread(rsyslog.start)  # same port, same output file
    await wait_caught_up(settings, group_of(settings), [audit_topic], worker=worker)
    ids |= {e["event_id"] for e in during}
    got = await wait_for_ids(rsyslog, ids)
    assert not ids - set(got), f"{len(ids - set(got))} audit events lost"
    assert set(await ocsf_records(settings)) == {i.encode() for i in ids}
    assert {o["event"]["event_id"] for o in hec.received} == ids
    assert await dead_letters(settings) == []
