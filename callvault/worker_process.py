"""Start, watch and stop a stream worker as a child process (demo, tests, benchmark).

Waiting is done on events the worker exposes — its health endpoint, its consumer group's committed
offsets — never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from callvault.errors import CallvaultError
from callvault.kafka_client import kafka_options
from callvault.settings import Settings, settings_env
from callvault.topics import admin_client, topic_partitions


class WorkerProcessError(CallvaultError):
    pass


class WorkerProcess:
    """A Callvault service as a child process: the stream worker by default."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        argv: list[str] | None = None,
        *,
        health_url: str | None = None,
    ) -> None:
        self.settings = settings
        self.log_path = log_path
        #: what to run; the default is the real worker, the benchmark swaps in a baseline app
        self.argv = argv or [sys.executable, "-m", "callvault", "worker", "run"]
        self.health_url = health_url or (
            f"http://{settings.worker.web_host}:{settings.worker.web_port}/healthz"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, **settings_env(self.settings)}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop/kill)
        self.proc = subprocess.Popen(
            self.argv,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def wait_healthy(self, timeout_s: float = 60.0) -> None:
        """Return once /healthz answers 200 (the worker: workspace view loaded, schema ensured)."""
        url = self.health_url
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc is None or self.proc.poll() is not None:
                raise WorkerProcessError(f"worker exited early:\n{self.log_tail()}")
            if await asyncio.to_thread(_answers_200, url):
                return
            if time.monotonic() > deadline:
                raise WorkerProcessError(
                    f"worker not healthy after {timeout_s}s:\n{self.log_tail()}"
                )
            await asyncio.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no graceful commit, the crash the pipeline must survive."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._close_log()

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _answers_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (http to loopback)
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


async def committed_and_end(
    settings: Settings, group: str, topics: list[str]
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """(committed offsets of ``group``, end offsets) for every partition of ``topics``."""
    from aiokafka import AIOKafkaConsumer

    admin: AIOKafkaAdminClient = admin_client(settings)
    consumer = AIOKafkaConsumer(**kafka_options(settings), group_id=None)
    await admin.start()
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in await topic_partitions(consumer, t)]
        ends = await consumer.end_offsets(tps)
        offsets = await admin.list_consumer_group_offsets(group, partitions=tps)
        committed = {tp: (meta.offset if meta.offset >= 0 else 0) for tp, meta in offsets.items()}
        for tp in tps:
            committed.setdefault(tp, 0)
        return committed, ends
    finally:
        await consumer.stop()
        await admin.close()


async def wait_caught_up(
    settings: Settings,
    group: str,
    topics: list[str],
    *,
    timeout_s: float = 120.0,
    worker: WorkerProcess | None = None,
) -> None:
    """Wait until ``group`` has committed everything currently in ``topics``.

    Because the worker commits only what it made durable, "committed == end" means "written".
    Topics that feed each other (ingest -> sealed) are checked until stable on all of them.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            committed, ends = await committed_and_end(settings, group, topics)
        except KafkaError as exc:
            # a fresh broker answers "coordinator not available" until __consumer_offsets is up
            if not exc.retriable or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)
            continue
        if all(committed[tp] >= end for tp, end in ends.items()):
            # the downstream topic may have grown while we looked: confirm once more
            committed2, ends2 = await committed_and_end(settings, group, topics)
            if ends2 == ends and all(committed2[tp] >= end for tp, end in ends2.items()):
                return
        if worker is not None and worker.proc is not None and worker.proc.poll() is not None:
            raise WorkerProcessError(f"worker died while catching up:\n{worker.log_tail()}")
        if time.monotonic() > deadline:
            lag = {f"{tp.topic}[{tp.partition}]": ends[tp] - committed[tp] for tp in ends}
            raise WorkerProcessError(f"not caught up after {timeout_s}s; lag {lag}")
        await asyncio.sleep(0.25)


def ingest_node_process(settings: Settings, log_path: Path) -> WorkerProcess:
    """The SIP ingest node as a child process, healthy once its agent API answers."""
    cfg = settings.ingest
    return WorkerProcess(
        settings,
        log_path,
        [sys.executable, "-m", "callvault", "ingest", "run"],
        health_url=f"http://{cfg.api_host}:{cfg.api_port}/healthz",
    )
