"""Events/s through the metadata slice, beside a raw aiokafka pass-through measured in the same run.

    python bench/metadata_slice.py [--events 30000]

Needs the dev stack (`callvault dev up`). Every leg reads the same number of records already in
Kafka and ends when its consumer group has committed everything:
- baseline: aiokafka consume -> produce (acks=all) -> commit, batch by batch; no decoding;
- faust:    the same pass-through as a faust agent with the worker's configuration and
            checkpointing (the framework's own cost, one stage);
- slice:    the real worker: Avro decode -> policy -> seal -> produce sealed.metadata (acks=all)
            -> decode -> ClickHouse insert (chDB) -> commit, on both topics (two stages).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callvault.control.workspaces import WorkspaceDirectory
from callvault.kafka_client import kafka_options
from callvault.settings import Settings, load_settings
from callvault.simulate import publish_events, simulated_calls
from callvault.topics import Topics, ensure_topics
from callvault.worker_process import WorkerProcess, wait_caught_up
from streams.app import app_id


def isolated(base: Settings, tmp: Path) -> Settings:
    return base.model_copy(
        update={
            "home": tmp / "home",
            "kafka": base.kafka.model_copy(update={"topic_prefix": f"b{uuid.uuid4().hex[:8]}."}),
            "clickhouse": base.clickhouse.model_copy(
                update={"dsn": SecretStr(f"chdb://{tmp}/chdb")}
            ),
            "worker": base.worker.model_copy(update={"web_port": 16999}),
            "log_level": "WARNING",
        }
    )


async def baseline(settings: Settings, n: int) -> float:
    topics = Topics(settings)
    src, dst = topics.ingest_metadata, topics.sealed_metadata
    consumer = AIOKafkaConsumer(
        src,
        **kafka_options(settings),
        group_id=f"bench-raw-{uuid.uuid4().hex}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
    )
    producer = AIOKafkaProducer(**kafka_options(settings), acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        seen = 0
        t0 = time.perf_counter()
        while seen < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            futs = []
            for msgs in batches.values():
                for m in msgs:
                    futs.append(await producer.send(dst, key=m.key, value=m.value))
                seen += len(msgs)
            await asyncio.gather(*futs)
            await consumer.commit()
        return time.perf_counter() - t0
    finally:
        await consumer.stop()
        await producer.stop()


async def worker_run(
    settings: Settings, tmp: Path, topics_done: list[str], argv: list[str] | None = None
) -> float:
    worker = WorkerProcess(settings, tmp / "worker.log", argv)
    t0 = time.perf_counter()
    worker.start()
    try:
        await worker.wait_healthy()
        t_ready = time.perf_counter()
        await wait_caught_up(settings, app_id(settings), topics_done, timeout_s=900, worker=worker)
        elapsed = time.perf_counter() - t_ready
        print(f"  (worker start to healthy: {t_ready - t0:.1f} s, not counted)")
        return elapsed
    finally:
        worker.stop()


async def prepare(settings: Settings, n_calls: int) -> int:
    await ensure_topics(settings)
    async with WorkspaceDirectory(settings) as d:
        await d.create("bench", region=settings.region, retention_days=90)
    events = [ev for c in simulated_calls("bench", n_calls, seed=42) for ev in c.events]
    await publish_events(settings, events)
    return len(events)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30000)
    args = parser.parse_args()
    base = load_settings()
    with tempfile.TemporaryDirectory(prefix="cv-bench-") as tmpdir:
        tmp = Path(tmpdir)
        raw_settings = isolated(base, tmp / "raw")
        n = await prepare(raw_settings, args.events // 3)
        t_raw = await baseline(raw_settings, n)
        faust_settings = isolated(base, tmp / "faust")
        await prepare(faust_settings, args.events // 3)
        passthrough = [sys.executable, str(Path(__file__).with_name("faust_passthrough.py"))]
        t_faust = await worker_run(
            faust_settings, tmp / "faust", [Topics(faust_settings).ingest_metadata], passthrough
        )
        slice_settings = isolated(base, tmp / "slice")
        await prepare(slice_settings, args.events // 3)
        t = Topics(slice_settings)
        t_slice = await worker_run(
            slice_settings, tmp / "slice", [t.ingest_metadata, t.sealed_metadata]
        )
    raw_eps, faust_eps, slice_eps = n / t_raw, n / t_faust, n / t_slice
    print(f"events: {n}")
    print(f"baseline aiokafka consume->produce->commit:   {raw_eps:8.0f} events/s ({t_raw:.2f} s)")
    print(
        f"faust pass-through (worker's config):         {faust_eps:8.0f} events/s ({t_faust:.2f} s)"
    )
    print(
        f"metadata slice (seal + ClickHouse, 2 stages): {slice_eps:8.0f} events/s ({t_slice:.2f} s)"
    )
    print(f"ratio faust/baseline: {faust_eps / raw_eps:.2f}")
    print(f"ratio slice/baseline: {slice_eps / raw_eps:.2f}")
    print(f"ratio slice/faust:    {slice_eps / faust_eps:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
