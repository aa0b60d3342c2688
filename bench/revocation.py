"""How fast a trunk revocation reaches an ingest node's live view (p50/p99), and how fast it
ends a call in progress (the node's BYE reaching the caller), beside the raw Kafka
produce->consume latency of the same broker measured in the same run.

    python bench/revocation.py [--n 50] [--calls 20]     # needs `callvault dev up`

Each round issues a credential, starts the clock, revokes it (the CLI's code path: write,
acks=all, audit) and stops the clock when a separately running view — exactly what an ingest
node holds — shows the credential as REVOKED. For calls in progress, an ingest node runs in
this process with a real SIP call (UDP, digest auth) held open on each trunk; the clock stops when
the caller receives the node's BYE. The baseline is one produce (acks=all) to a topic and the
moment a tailing consumer sees it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callvault.control.trunks import TrunkDirectory, trunk_view
from callvault.control.workspaces import WorkspaceDirectory
from callvault.kafka_client import kafka_options
from callvault.settings import load_settings
from callvault.topics import Topics, ensure_topics, topic_partitions


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def revocations(n: int) -> list[float]:
    base = load_settings()
    settings = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"topic_prefix": f"r{uuid.uuid4().hex[:8]}."})
        }
    )
    await ensure_topics(settings)
    async with WorkspaceDirectory(settings) as d:
        await d.create("bench", region=settings.region)
    view = trunk_view(settings)  # the ingest node's view
    await view.start()
    out = []
    try:
        async with TrunkDirectory(settings, actor="bench") as trunks:
            for i in range(n):
                issued = await trunks.create("bench", f"t{i}")
                await view.sync()
                t0 = time.perf_counter()
                await trunks.revoke(f"t{i}")
                # polled at 1 ms on purpose: this loop is the measurement
                while (c := view.get(issued.credential.username)) is None or c.active:  # noqa: ASYNC110
                    await asyncio.sleep(0.001)
                out.append(time.perf_counter() - t0)
    finally:
        await view.stop()
    return out


async def calls_ended(n: int) -> list[float]:
    import socket

    from sip_ingest.client import CallFailed, CallOptions, place_call
    from sip_ingest.node import IngestNode

    def port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    base = load_settings()
    settings = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"topic_prefix": f"r{uuid.uuid4().hex[:8]}."}),
            "ingest": base.ingest.model_copy(
                update={"sip_port": port(), "api_port": port(),
                        "journal_dir": base.home / f"bench-journal-{uuid.uuid4().hex[:6]}"}
            ),
        }
    )  # fmt: skip
    await ensure_topics(settings)
    async with WorkspaceDirectory(settings) as d:
        await d.create("bench", region=settings.region)
    node = IngestNode(settings)
    await node.start()
    out = []
    try:
        async with TrunkDirectory(settings, actor="bench") as trunks:
            for i in range(n):
                issued = await trunks.create("bench", f"c{i}")
                await node.trunks.sync()
                opts = CallOptions(
                    "127.0.0.1", settings.ingest.sip_port, username=issued.credential.username,
                    password=issued.password, hold_s=30.0, paced=False,
                )  # fmt: skip
                call = asyncio.create_task(place_call(opts))
                while not any(a.answered for a in node.uas.calls.values()):  # noqa: ASYNC110
                    await asyncio.sleep(0.001)
                t0 = time.perf_counter()
                await trunks.revoke(f"c{i}")
                try:
                    await asyncio.wait_for(call, 10)
                    raise RuntimeError("the call was not ended by the revocation")
                except CallFailed:
                    out.append(time.perf_counter() - t0)
    finally:
        await node.stop()
    return out


async def raw_latency(n: int) -> list[float]:
    settings = load_settings()
    await ensure_topics(settings, [Topics(settings).specs["audit.events"]])
    topic = Topics(settings).audit_events
    consumer = AIOKafkaConsumer(**kafka_options(settings), group_id=None)
    producer = AIOKafkaProducer(**kafka_options(settings), acks="all")
    await consumer.start()
    await producer.start()
    out = []
    try:
        tps = [TopicPartition(topic, p) for p in await topic_partitions(consumer, topic)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for _ in range(n):
            marker = uuid.uuid4().bytes
            t0 = time.perf_counter()
            await producer.send_and_wait(topic, key=b"bench", value=marker)
            seen = False
            while not seen:
                for msgs in (await consumer.getmany(timeout_ms=200)).values():
                    seen = seen or any(m.value == marker for m in msgs)
            out.append(time.perf_counter() - t0)
    finally:
        await consumer.stop()
        await producer.stop()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    raw = await raw_latency(args.n)
    rev = await revocations(args.n)
    ended = await calls_ended(args.calls)
    for name, xs in (
        ("raw produce->consume (acks=all)", raw),
        ("trunk revocation -> node view", rev),
        ("trunk revocation -> BYE at caller", ended),
    ):
        print(f"{name:<34} p50 {statistics.median(xs) * 1000:7.1f} ms   "
              f"p99 {pct(xs, 99) * 1000:7.1f} ms   max {max(xs) * 1000:7.1f} ms")  # fmt: skip
    print(f"ratio p50 revocation/raw: {statistics.median(rev) / statistics.median(raw):.2f}")
    print(f"ratio p50 call ended/raw: {statistics.median(ended) / statistics.median(raw):.2f}")


if __name__ == "__main__":
    asyncio.run(main())
