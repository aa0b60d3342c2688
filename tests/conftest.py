"""Fixtures shared by every test package.

``stack_settings`` is the real local stack (Kafka + SeaweedFS) for integration tests, under its own
home (``$CALLVAULT_HOME``, else /tmp/callvault-test-home) and on its own ports, so it runs next to
a developer's ``callvault dev up`` stack (defaults 19092, 18333, ...) without colliding.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from callvault.devstack import stack
from callvault.devstack.common import file_lock
from callvault.settings import DevStackSettings, KafkaSettings, S3Settings, Settings, load_settings

TEST_HOME = Path("/tmp/callvault-test-home")
#: Ports of the test stack. Below the ephemeral range, and clear of the dev defaults *and* of
#: SeaweedFS's gRPC ports (HTTP + 10000). A port configured through CALLVAULT_* or a config file
#: (anything but the dev default) wins, and the clients follow it.
TEST_PORTS = {
    "kafka_port": 29092,
    "kafka_controller_port": 29093,
    "s3_port": 21333,
    "weed_master_port": 21334,
    "weed_volume_port": 21335,
    "weed_filer_port": 21336,
    "weed_admin_port": 21337,
    "syslog_port": 21514,
}


def load_test_settings() -> Settings:
    home = Path(os.environ.get("CALLVAULT_HOME") or TEST_HOME)
    base = load_settings(environment="test", home=home)
    dev_defaults = DevStackSettings()
    dev = base.dev.model_copy(
        update={
            k: v for k, v in TEST_PORTS.items() if getattr(base.dev, k) == getattr(dev_defaults, k)
        }
    )
    kafka, s3 = base.kafka, base.s3
    if kafka.bootstrap == KafkaSettings().bootstrap:
        kafka = kafka.model_copy(update={"bootstrap": f"127.0.0.1:{dev.kafka_port}"})
    # every isolated copy of these settings (own home) still trusts the stack's CA
    kafka = kafka.model_copy(update={"ca_file": kafka.ca_file or home / "tls" / "ca.pem"})
    if s3.endpoint == S3Settings().endpoint:
        s3 = s3.model_copy(update={"endpoint": f"http://127.0.0.1:{dev.s3_port}"})
    return base.model_copy(update={"dev": dev, "kafka": kafka, "s3": s3})


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[Settings]:
    """Settings of a running test stack; started if needed (a failure errors, never skips).

    Several pytest sessions may share the stack (parallel runs on one machine). Each holds a lease
    (a file named by its pid); the last session out stops the services a test session started,
    and never a stack started beforehand by .ci/run or by hand.
    """
    settings = load_test_settings()
    leases = settings.home / ".test-sessions"
    mine, started_by_tests = leases / str(os.getpid()), leases / "started"
    with file_lock(settings.home / ".test-sessions.lock"):
        leases.mkdir(parents=True, exist_ok=True)
        mine.touch()
        before = {s.name for s in stack.status(settings) if s.running}
        try:
            stack.up(settings)
        except BaseException:
            mine.unlink()
            raise
        started = set(stack.SERVICE_NAMES) - before
        if started:
            known = (
                set(started_by_tests.read_text().split()) if started_by_tests.exists() else set()
            )
            started_by_tests.write_text(" ".join(sorted(known | started)))
    yield settings
    with file_lock(settings.home / ".test-sessions.lock"):
        mine.unlink(missing_ok=True)
        if any(_alive(int(p.name)) for p in leases.iterdir() if p.name.isdigit()):
            return
        if started_by_tests.exists():
            stack.down(settings, only=started_by_tests.read_text().split())
            started_by_tests.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: Topic prefixes the tests give their isolated settings: one letter, 10 hex digits, a dot.
_TEST_PREFIX = re.compile(r"^[a-z][0-9a-f]{10}\.")
#: The prefixes handed out in *this* session: only their topics are dropped, never those of
#: another pytest session sharing the broker (its tests would lose their topics mid-run).
_MY_PREFIXES: set[str] = set()


def topic_prefix(letter: str = "t") -> str:
    """A fresh per-test topic prefix (one letter, 10 hex digits, a dot), dropped after the test."""
    prefix = f"{letter}{uuid.uuid4().hex[:10]}."
    _MY_PREFIXES.add(prefix)
    return prefix


@contextlib.contextmanager
def module_topic_prefix(settings: Settings, letter: str = "m") -> Iterator[str]:
    """A topic prefix for a module-scoped setup: the per-test cleanup leaves its topics alone,
    and they are dropped when the block ends (the module's last test is done)."""
    prefix = f"{letter}{uuid.uuid4().hex[:10]}."
    try:
        yield prefix
    finally:
        _MY_PREFIXES.add(prefix)
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, _drop_prefixed_topics(settings)).result()


async def _drop_prefixed_topics(settings: Settings) -> None:
    from callvault.topics import admin_client

    mine = set(_MY_PREFIXES)
    admin = admin_client(settings)
    await admin.start()
    try:
        doomed = [
            t
            for t in await admin.list_topics()
            if (m := _TEST_PREFIX.match(t)) is not None and m.group(0) in mine
        ]
        for i in range(0, len(doomed), 200):
            await admin.delete_topics(doomed[i : i + 200])
        _MY_PREFIXES.difference_update(mine)
    finally:
        await admin.close()


@pytest.fixture(autouse=True)
def _drop_test_topics(request: pytest.FixtureRequest) -> Iterator[None]:
    """Delete the per-test topics after each test that used the stack: a broker holding
    thousands of topics answers every metadata request, and so every test, more slowly."""
    yield
    if "stack_settings" in request.fixturenames:
        settings = request.getfixturevalue("stack_settings")
        # on a thread of its own: never touch the event loop pytest-asyncio keeps for the session
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, _drop_prefixed_topics(settings)).result()
