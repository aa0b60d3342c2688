"""The publisher against the shared real Kafka: delivery, order, spooling, drops, restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from callvault.settings import Settings
from callvault.topics import Topics
from sip_ingest.publish import DROP_REASONS, Journal, Publisher, PublisherOptions, Record
from tests.kafka_read import read_all
from tests.sip_ingest.publish.support import (
    check_delivery,
    dead_bootstrap,
    ensure_ingest_topics,
    ingest_settings,
    wait_for,
    with_bootstrap,
)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def drops(registry: CollectorRegistry) -> dict[str, float]:
    return {
        reason: sample(registry, "callvault_ingest_dropped_total", reason=reason)
        for reason in DROP_REASONS
    }


def records(n: int, keys: int = 20, size: int = 64) -> list[tuple[bytes, bytes]]:
    return [(f"call-{i % keys}".encode(), f"{i:08d}".encode() + bytes(size)) for i in range(n)]


async def started(settings: Settings, **options: object) -> tuple[Publisher, CollectorRegistry]:
    registry = CollectorRegistry()
    publisher = Publisher(settings, registry, options=PublisherOptions(**options))  # type: ignore[arg-type]
    await publisher.start()
    return publisher, registry


async def test_every_record_arrives_once_in_order_per_key(ingest_env: Settings) -> None:
    topics = Topics(ingest_env)
    audio, meta = topics.name("ingest.audio"), topics.name("ingest.metadata")
    publisher, registry = await started(ingest_env)
    sent_audio, sent_meta = records(3000), records(500, keys=7)
    for i, (key, value) in enumerate(sent_audio):
        assert publisher.publish(audio, key, value, headers=[("n", str(i).encode())])
        if i < len(sent_meta):
            assert publisher.publish(meta, *sent_meta[i])
        if i % 100 == 0:
            await asyncio.sleep(0)  # the media loop yields between packets
    assert await publisher.flush(60)
    assert sample(registry, "callvault_ingest_kafka_up") == 1
    await publisher.stop()

    got_audio = await read_all(ingest_env, audio)
    check_delivery(sent_audio, got_audio, exactly_once=True)
    check_delivery(sent_meta, await read_all(ingest_env, meta), exactly_once=True)
    assert {(h[0], h[1]) for h in got_audio[0].headers} <= {
        ("n", str(i).encode()) for i in range(3000)
    }
    assert sample(registry, "callvault_ingest_published_total", topic=audio) == 3000
    assert sample(registry, "callvault_ingest_published_total", topic=meta) == 500
    assert sample(registry, "callvault_ingest_spooled_total") == 0
    assert set(drops(registry).values()) == {0}
    assert sample(registry, "callvault_ingest_queue_depth") == 0


async def test_full_queue_spools_without_reordering(
    stack_settings: Settings, tmp_path: Path
) -> None:
    settings = ingest_settings(stack_settings, tmp_path, queue_max=100)
    await ensure_ingest_topics(settings)
    topic = Topics(settings).name("ingest.audio")
    publisher, registry = await started(settings)
    sent = records(5000)
    for key, value in sent:  # a burst with no await: the sender cannot run meanwhile
        assert publisher.publish(topic, key, value)
    assert publisher.status().spooling
    assert await publisher.flush(60)
    assert not publisher.status().spooling
    await publisher.stop()
    check_delivery(sent, await read_all(settings, topic), exactly_once=True)
    assert sample(registry, "callvault_ingest_spooled_total") >= 4900
    assert set(drops(registry).values()) == {0}
    assert list((tmp_path / "journal").glob("*.seg")) == []


async def test_kafka_down_at_boot_graceful_stop_keeps_all_then_restart_drains(
    ingest_env: Settings,
) -> None:
    topic = Topics(ingest_env).name("ingest.transcript")
    down = with_bootstrap(ingest_env, dead_bootstrap())
    publisher, registry = await started(down, delivery_timeout_s=2.0)
    sent = records(2000, size=500)
    for i, (key, value) in enumerate(sent):
        assert publisher.publish(topic, key, value)
        if i == 10:
            await wait_for(lambda: publisher.status().spooling)
    assert sample(registry, "callvault_ingest_kafka_up") == 0
    t0 = time.monotonic()
    await publisher.stop()
    assert time.monotonic() - t0 < 5, "stop must not wait for a Kafka that is down"
    assert set(drops(registry).values()) == {0}
    assert sample(registry, "callvault_ingest_spooled_total") == 2000

    # Everything is on disk, encrypted (no record value in clear) and in order (read with the
    # journal itself, as the next start will).
    on_disk = b"".join(p.read_bytes() for p in ingest_env.ingest_journal_dir.glob("*.seg"))
    assert not any(value[:8] in on_disk for _, value in sent[::97])
    journal = Journal(
        ingest_env.ingest_journal_dir,
        ingest_env.ingest.journal_max_bytes,
        key_file=ingest_env.ingest_journal_key_file,
    )
    assert [(e.record.key, e.record.value) for e in journal.replay()] == sent
    journal.close()

    publisher, registry = await started(ingest_env)
    assert publisher.status().spooling  # it starts by draining the journal
    fresh = (b"call-new", b"after-restart")
    assert publisher.publish(topic, *fresh)
    assert await publisher.flush(60)
    await publisher.stop()
    check_delivery([*sent, fresh], await read_all(ingest_env, topic), exactly_once=True)
    assert list(ingest_env.ingest_journal_dir.glob("*.seg")) == []
    assert sample(registry, "callvault_ingest_journal_bytes") == 0


async def test_a_full_journal_is_the_one_counted_way_to_lose_records(
    stack_settings: Settings, tmp_path: Path
) -> None:
    settings = ingest_settings(stack_settings, tmp_path, journal_max_bytes=1024 * 1024)
    await ensure_ingest_topics(settings)
    topic = Topics(settings).name("ingest.audio")
    down = with_bootstrap(settings, dead_bootstrap())
    publisher, registry = await started(down, delivery_timeout_s=2.0)
    await wait_for(lambda: publisher.status().spooling)
    sent = records(300, size=8000)  # 2.4 MB of one-second G.711 chunks into a 1 MiB journal
    accepted = [rec for rec in sent if publisher.publish(topic, *rec)]
    refused = len(sent) - len(accepted)
    assert refused > 0
    assert drops(registry) == {r: (refused if r == "journal_full" else 0) for r in DROP_REASONS}
    assert accepted == sent[: len(accepted)]  # the journal keeps a prefix, it never punches holes
    await publisher.stop()

    publisher, registry = await started(settings)
    assert await publisher.flush(60)
    await publisher.stop()
    check_delivery(accepted, await read_all(settings, topic), exactly_once=True)


async def test_oversized_invalid_and_out_of_lifecycle_records_are_counted(
    ingest_env: Settings,
) -> None:
    topic = Topics(ingest_env).name("ingest.metadata")
    registry = CollectorRegistry()
    publisher = Publisher(ingest_env, registry)
    assert not publisher.publish(topic, b"k", b"before start")
    await publisher.start()
    assert not publisher.publish(topic, b"k", bytes(2 * 1024 * 1024))
    assert not publisher.publish_avro(topic, b"k", "CallEvent", {"call_id": 5})
    assert publisher.publish_avro(
        topic,
        b"k",
        "TranscriptSegment",
        {
            "call_id": "k",
            "workspace_id": "acme",
            "segment_id": "s1",
            "kind": "SEGMENT",
            "speaker": "CALLER",
            "text": "hello",
            "started_at": 1_700_000_000_000_000,
        },
    )
    await publisher.stop()
    assert not publisher.publish(topic, b"k", b"after stop")
    assert drops(registry) == {
        **{r: 0 for r in DROP_REASONS},
        "not_running": 2,
        "too_large": 1,
        "encode_error": 1,
    }
    assert len(await read_all(ingest_env, topic)) == 1


async def test_torn_journal_tail_at_start_is_counted_and_the_rest_delivered(
    ingest_env: Settings,
) -> None:
    topic = Topics(ingest_env).name("ingest.audio")
    journal = Journal(
        ingest_env.ingest_journal_dir,
        ingest_env.ingest.journal_max_bytes,
        key_file=ingest_env.ingest_journal_key_file,
    )
    sent = records(50)
    for key, value in sent:
        journal.append(Record(topic, key, value))
    journal.close()
    (segment,) = ingest_env.ingest_journal_dir.glob("*.seg")
    with segment.open("r+b") as f:
        f.truncate(segment.stat().st_size - 3)  # the crash cut the last write short

    publisher, registry = await started(ingest_env)
    assert await publisher.flush(60)
    await publisher.stop()
    check_delivery(sent[:-1], await read_all(ingest_env, topic), exactly_once=True)
    assert sample(registry, "callvault_ingest_journal_corruption_total") == 1
    assert sample(registry, "callvault_ingest_journal_discarded_bytes_total") > 0
