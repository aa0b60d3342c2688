"""Getting the ingest node's records into Kafka without blocking the media loop or losing any.

Every record handed to :meth:`Publisher.publish` is, at any moment, in exactly one of four
places: acknowledged by Kafka (acks=all), in the in-memory queue, in the disk journal, or counted
in ``callvault_ingest_dropped_total{reason}`` and logged. Delivery is at least once: a record
whose acknowledgement was lost to an outage is sent again from the journal, and consumers
deduplicate (event ids, chunk sequence numbers, segment ids).

Order. Records reach Kafka in the order ``publish`` was called, which is what keeps each call's
audio, transcript and metadata in order on its partition. The rule that guarantees it: the queue
only ever holds records older than everything in the journal. So

- while the journal is empty, records go to the queue, and the sender sends the queue's head;
- when the queue is full, or Kafka fails, the node switches to *spooling*: the queue's records
  are moved (in order, in small chunks so the loop stays responsive) to the journal, and every
  later record follows them there;
- the sender drains the journal head first, and only when the journal is empty does publishing
  switch back to the queue.

Records leave the queue or the journal only once Kafka acknowledged them, so an outage in the
middle of a send loses nothing; what it can do is send some records twice.

Outages. A send round that fails or exceeds ``delivery_timeout_s`` marks Kafka down; from then on
one record at a time probes it (with backoff) until a probe is acknowledged, so an outage does
not pile duplicates into the producer. The producer instance is kept across retriable errors
(aiokafka reconnects by itself, and one producer is one ordered pipe per partition); it is
replaced only when its own state is broken. At boot, the producer is started in the background:
a node that comes up while Kafka is down spools from the first record.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from callvault.settings import Settings
from schemas.codec import get_codec
from schemas.errors import SchemaEncodeError
from sip_ingest.publish.errors import JournalError, JournalFull
from sip_ingest.publish.framing import Record
from sip_ingest.publish.journal import Corruption, Journal
from sip_ingest.publish.kafka import (
    MAX_RECORD_BYTES,
    make_producer,
    producer_broken,
    refused_for_good,
)
from sip_ingest.publish.metrics import IngestMetrics

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PublisherOptions:
    """Tuning that is not deployment configuration (that lives in ``IngestSettings``)."""

    #: A send round not acknowledged within this is treated as Kafka failing.
    delivery_timeout_s: float = 10.0
    round_max_records: int = 500
    round_max_bytes: int = 4 * 1024 * 1024
    linger_ms: int = 5
    #: How often spooled data and the drain checkpoint are fsynced (see journal.py).
    fsync_interval_s: float = 0.2
    #: How long ``stop()`` keeps draining to a healthy Kafka before journaling the rest.
    stop_timeout_s: float = 10.0
    retry_backoff_min_s: float = 0.2
    retry_backoff_max_s: float = 5.0
    #: Records moved from the queue to the journal per event-loop turn while spilling.
    spill_chunk: int = 256


@dataclass(frozen=True)
class PublisherStatus:
    running: bool
    kafka_up: bool
    queue_depth: int
    journal_bytes: int
    spooling: bool


_State = Literal["new", "running", "stopping", "stopped"]


class Publisher:
    """Publishes ingest records to Kafka; ``publish`` is synchronous and never blocks."""

    def __init__(
        self,
        settings: Settings,
        metrics_registry: CollectorRegistry,
        *,
        options: PublisherOptions | None = None,
    ) -> None:
        self.settings = settings
        self.options = options or PublisherOptions()
        self.metrics = IngestMetrics(metrics_registry)
        self._queue_max = settings.ingest.queue_max
        self._queue: deque[Record] = deque()
        self._journal: Journal | None = None
        self._spooling = False
        #: Bumped whenever the queue's records move to the journal, so a send round that was in
        #: flight meanwhile does not pop records that are no longer the ones it sent.
        self._generation = 0
        self._state: _State = "new"
        #: publish() accepts records (running, or stopping and still able to journal them).
        self._accepting = False
        self._producer: AIOKafkaProducer | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._kafka_up = False
        #: None until the first connect attempt, so "down at boot" is logged like any outage.
        self._kafka_state: bool | None = None
        self._probing = False
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._stop_deadline = 0.0
        self._sender: asyncio.Task[None] | None = None
        self._syncer: asyncio.Task[None] | None = None
        self._spill_task: asyncio.Task[None] | None = None
        self._drop_log = _DropLog()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the journal (recovering it after a crash) and start sending in the background.

        Returns without waiting for Kafka. Raises JournalError if the journal directory cannot
        be used: a node that cannot spool must not pretend it can. That includes
        ``JournalKeyError``: spooled records encrypted under a journal key that is missing or
        different (they are kept until the key file is restored).
        """
        if self._state != "new":
            raise RuntimeError(f"publisher is {self._state}; create a new one")
        journal = await asyncio.to_thread(
            Journal,
            self.settings.ingest_journal_dir,
            self.settings.ingest.journal_max_bytes,
            key_file=self.settings.ingest_journal_key_file,
            on_corruption=self._on_corruption,
        )
        self._journal = journal
        self.metrics.journal_bytes.set_function(lambda: journal.bytes_on_disk)
        self.metrics.queue_depth.set_function(lambda: len(self._queue))
        self.metrics.kafka_up.set(0)
        if not journal.is_drained():
            self._spooling = True
            log.info("journal_replay_pending", journal_bytes=journal.bytes_on_disk)
        self._state = "running"
        self._accepting = True
        self._sender = asyncio.create_task(self._run(), name="publisher-sender")
        self._syncer = asyncio.create_task(self._sync_loop(), name="publisher-journal-sync")

    async def stop(self) -> None:
        """Flush: drain to Kafka while it is up (up to ``stop_timeout_s``), journal the rest.

        After it returns nothing is left in memory: every accepted record is in Kafka or in the
        fsynced journal, where the next start picks it up.
        """
        if self._state == "new":
            self._state = "stopped"
            return
        if self._state != "running":
            return
        loop = asyncio.get_running_loop()
        self._state = "stopping"
        self._stop_deadline = loop.time() + self.options.stop_timeout_s
        self._stopping.set()
        self._wake.set()
        assert self._sender is not None and self._journal is not None
        budget = self.options.stop_timeout_s + self.options.delivery_timeout_s + 5
        try:
            await asyncio.wait_for(asyncio.shield(self._sender), budget)
        except TimeoutError:
            self._sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._sender
        if self._spill_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._spill_task
        spooled_on_stop = len(self._queue)
        if self._queue:
            self._generation += 1
            self._spooling = True
            while self._queue:
                self._spool(self._queue.popleft())
        self._state = "stopped"
        self._accepting = False
        if self._syncer is not None:
            self._syncer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._syncer
        journal = self._journal
        await asyncio.to_thread(journal.close)
        if self._producer is not None:
            self._retire_producer()
        await self._await_retiring()
        self.metrics.kafka_up.set(0)
        log.info(
            "publisher_stopped",
            spooled_on_stop=spooled_on_stop,
            journal_bytes=journal.bytes_on_disk,
            journal_pending=not journal.is_drained(),
        )

    async def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything published so far is acknowledged by Kafka; False on timeout."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._queue or self._spooling:
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def status(self) -> PublisherStatus:
        return PublisherStatus(
            running=self._state == "running",
            kafka_up=self._kafka_up,
            queue_depth=len(self._queue),
            journal_bytes=self._journal.bytes_on_disk if self._journal else 0,
            spooling=self._spooling,
        )

    # -- the media loop's side: never blocks, never raises -------------------------------------

    def publish(
        self, topic: str, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]] = ()
    ) -> bool:
        """Accept a record for Kafka; True if accepted, False if dropped (counted and logged).

        Call from the event loop's thread. Cost: an append to a deque, or one ``write`` to the
        journal while spooling.
        """
        if not self._accepting:
            return self._drop("not_running", topic)
        record = Record(topic, key, value, tuple(headers) if headers else ())
        size = len(key) + len(value) + (sum(len(n) + len(v) for n, v in headers) if headers else 0)
        if size > MAX_RECORD_BYTES:
            return self._drop("too_large", topic, f"{size} bytes")
        if not self._spooling:
            queue = self._queue
            if len(queue) < self._queue_max:
                queue.append(record)
                if len(queue) == 1:  # the sender only sleeps on an empty queue
                    self._wake.set()
                return True
            self._start_spooling("queue_full")
        if self._queue:
            # Older records are still being moved to the journal: queue behind them.
            self._queue.append(record)
            return True
        return self._spool(record)

    def publish_avro(
        self,
        topic: str,
        key: bytes,
        schema: str,
        record: Mapping[str, Any],
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> bool:
        """Encode ``record`` with the project codec and publish it; an invalid record is a
        counted ``encode_error`` drop (the codec's message names the field, never the value)."""
        try:
            value = get_codec().encode(schema, record)
        except SchemaEncodeError as exc:
            return self._drop("encode_error", topic, str(exc))
        return self.publish(topic, key, value, headers)

    def record_drop(self, reason: str, topic: str, detail: str | None = None) -> None:
        """Count a record the caller gave up on before publishing, under the same metric."""
        self._drop(reason, topic, detail)

    # -- spooling ----------------------------------------------------------------------------

    def _start_spooling(self, reason: str) -> None:
        if self._spooling:
            return
        self._spooling = True
        self._generation += 1
        log.warning("spooling_to_journal", reason=reason, in_memory=len(self._queue))
        if self._queue and (self._spill_task is None or self._spill_task.done()):
            self._spill_task = asyncio.get_running_loop().create_task(self._spill())

    async def _spill(self) -> None:
        """Move the queue to the journal, oldest first, a chunk per loop turn."""
        chunk = self.options.spill_chunk
        while self._queue:
            for _ in range(min(chunk, len(self._queue))):
                self._spool(self._queue[0])
                self._queue.popleft()
            await asyncio.sleep(0)
        self._wake.set()

    def _spool(self, record: Record) -> bool:
        assert self._journal is not None
        try:
            self._journal.append(record)
        except JournalFull as exc:
            return self._drop("journal_full", record.topic, str(exc))
        except JournalError as exc:
            return self._drop("journal_error", record.topic, str(exc))
        self.metrics.spooled.inc()
        self._wake.set()
        return True

    def _drop(self, reason: str, topic: str, detail: str | None = None) -> bool:
        self.metrics.dropped.labels(reason).inc()
        self._drop_log(reason, topic, detail)
        return False

    def _on_corruption(self, corruption: Corruption) -> None:
        self.metrics.journal_corruption.inc()
        self.metrics.journal_discarded_bytes.inc(corruption.discarded_bytes)

    async def _sync_loop(self) -> None:
        assert self._journal is not None
        journal = self._journal
        while True:
            await asyncio.sleep(self.options.fsync_interval_s)
            if journal.needs_sync:
                try:
                    await asyncio.to_thread(journal.sync)
                except JournalError as exc:
                    log.error("journal_sync_failed", error=str(exc))

    # -- the sender --------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = self.options.retry_backoff_min_s
        while not self._should_exit():
            self._wake.clear()
            try:
                if self._producer is None and not await self._connect():
                    sent, total = 0, 1
                elif self._spooling:
                    sent, total = await self._journal_round()
                else:
                    sent, total = await self._queue_round()
            except Exception:
                log.exception("publisher_round_crashed")
                sent, total = 0, 1
            if total == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)
            elif sent < total:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                delay = min(delay * 2, self.options.retry_backoff_max_s)
            else:
                delay = self.options.retry_backoff_min_s

    def _should_exit(self) -> bool:
        if self._state != "stopping":
            return False
        nothing_left = not self._queue and not self._spooling
        out_of_time = asyncio.get_running_loop().time() >= self._stop_deadline
        # _probing: the last attempt (connect or send) failed, so Kafka is down right now and
        # waiting for it would only delay getting the rest safely onto disk.
        return nothing_left or out_of_time or self._probing

    def _round_limit(self) -> int:
        return 1 if self._probing else self.options.round_max_records

    async def _queue_round(self) -> tuple[int, int]:
        if not self._queue:
            return 0, 0
        generation = self._generation
        batch: list[Record] = []
        size = 0
        for record in self._queue:
            if len(batch) >= self._round_limit() or (batch and size > self.options.round_max_bytes):
                break
            batch.append(record)
            size += record.size
        sent = await self._send(batch)
        if generation == self._generation:
            for _ in range(sent):
                self._queue.popleft()
        if sent < len(batch):
            self._start_spooling("kafka_failing")
        return sent, len(batch)

    async def _journal_round(self) -> tuple[int, int]:
        assert self._journal is not None
        journal = self._journal
        if self._queue:
            return 0, 0  # the spill is still moving older records into the journal
        entries = await asyncio.to_thread(
            journal.read, self._round_limit(), self.options.round_max_bytes
        )
        sent = await self._send([entry.record for entry in entries]) if entries else 0
        if sent:
            journal.ack(entries[sent - 1].position)
        if sent == len(entries) and not self._queue and journal.is_drained():
            self._spooling = False
            log.info("journal_drained")
        return sent, len(entries)

    async def _send(self, records: Sequence[Record]) -> int:
        """Send a round and wait for it; returns how many leading records are settled
        (acknowledged, or refused for good and counted as dropped)."""
        assert self._producer is not None
        producer = self._producer
        outcomes: list[asyncio.Future[Any] | BaseException] = []
        try:
            async with asyncio.timeout(self.options.delivery_timeout_s):
                for index, record in enumerate(records):
                    try:
                        future = await producer.send(
                            record.topic, record.value, key=record.key, headers=list(record.headers)
                        )
                    except Exception as exc:  # raised before the record was queued
                        outcomes.append(exc)
                        if isinstance(exc, KafkaError) and not refused_for_good(exc):
                            break
                        continue
                    future.add_done_callback(_consume_result)
                    outcomes.append(future)
                    if index % 64 == 63:
                        await asyncio.sleep(0)  # let the media loop in between sends
                pending = [o for o in outcomes if isinstance(o, asyncio.Future)]
                if pending:
                    await asyncio.wait(pending)
        except TimeoutError:
            pass
        return self._settle(records, outcomes)

    def _settle(
        self, records: Sequence[Record], outcomes: Sequence[asyncio.Future[Any] | BaseException]
    ) -> int:
        published: Tally[str] = Tally()
        settled = 0
        failure: BaseException | None = None
        for record, outcome in zip(records, outcomes, strict=False):
            if isinstance(outcome, BaseException):
                exc: BaseException | None = outcome
            elif not outcome.done() or outcome.cancelled():
                failure = TimeoutError(
                    f"not acknowledged within {self.options.delivery_timeout_s}s"
                )
                break
            else:
                exc = outcome.exception()
            if exc is None:
                published[record.topic] += 1
            elif isinstance(exc, KafkaError) and not refused_for_good(exc):
                failure = exc
                break
            else:
                self._drop("kafka_rejected", record.topic, f"{type(exc).__name__}: {exc}")
            settled += 1
        if failure is None and settled < len(records):
            failure = TimeoutError(f"not sent within {self.options.delivery_timeout_s}s")
        for topic, count in published.items():
            self.metrics.published.labels(topic).inc(count)
        if failure is None:
            self._probing = False
            self._set_kafka_up(True)
        else:
            self._probing = True
            self._set_kafka_up(False, failure)
            if producer_broken(failure):
                self._retire_producer()
        return settled

    # -- the producer ------------------------------------------------------------------------

    async def _connect(self) -> bool:
        await self._await_retiring()
        producer = make_producer(
            self.settings,
            request_timeout_s=self.options.delivery_timeout_s,
            linger_ms=self.options.linger_ms,
        )
        try:
            async with asyncio.timeout(self.options.delivery_timeout_s):
                await producer.start()
        except (KafkaError, OSError, TimeoutError) as exc:
            self._probing = True
            self._set_kafka_up(False, exc)
            self._start_spooling("kafka_unreachable")
            await _stop_quietly(producer, self.options.delivery_timeout_s)
            return False
        self._producer = producer
        self._set_kafka_up(True)
        return True

    def _retire_producer(self) -> None:
        """Close the producer in the background; the next connect waits for it, so a late
        delivery from the old instance cannot overtake records sent by the new one."""
        old, self._producer = self._producer, None
        if old is not None:
            task = asyncio.get_running_loop().create_task(
                _stop_quietly(old, self.options.delivery_timeout_s)
            )
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _await_retiring(self) -> None:
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    def _set_kafka_up(self, up: bool, error: BaseException | None = None) -> None:
        if up == self._kafka_state:
            return
        self._kafka_state = self._kafka_up = up
        self.metrics.kafka_up.set(1 if up else 0)
        if up:
            log.info("kafka_up", bootstrap=self.settings.kafka.bootstrap)
        else:
            log.warning(
                "kafka_down",
                bootstrap=self.settings.kafka.bootstrap,
                error=f"{type(error).__name__}: {error}" if error else None,
            )


async def _stop_quietly(producer: AIOKafkaProducer, timeout_s: float) -> None:
    """aiokafka's stop() waits for queued batches; with Kafka gone that is until they expire."""
    try:
        async with asyncio.timeout(timeout_s):
            await producer.stop()
    except Exception as exc:
        log.warning("kafka_producer_close_failed", error=f"{type(exc).__name__}: {exc}")


def _consume_result(future: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of a send nobody waits for any more (an abandoned round), so asyncio
    does not log 'exception was never retrieved' for it."""
    if not future.cancelled():
        future.exception()


class _DropLog:
    """Log the first drop of each reason at once, then at most one summary line per interval:
    during a long outage a full journal would otherwise log once per record."""

    def __init__(self, interval_s: float = 10.0) -> None:
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._since: Tally[str] = Tally()

    def __call__(self, reason: str, topic: str, detail: str | None) -> None:
        now = time.monotonic()
        last = self._last.get(reason)
        if last is not None and now - last < self._interval_s:
            self._since[reason] += 1
            return
        self._last[reason] = now
        log.error(
            "record_dropped",
            reason=reason,
            topic=topic,
            detail=detail,
            dropped_since_last_line=self._since.pop(reason, 0),
        )
