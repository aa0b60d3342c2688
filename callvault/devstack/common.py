"""Pieces shared by the dev-stack services: the status record, port checks, readiness polling."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import fcntl
import socket
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from callvault.errors import DevStackError
from callvault.settings import Settings

if TYPE_CHECKING:
    from callvault.devstack.process import ManagedProcess

LOOPBACK = "127.0.0.1"
_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost"})

T = TypeVar("T")

#: Receives one short human line about slow steps (the CLI prints it on stderr).
Progress = Callable[[str], None]


def quiet(_: str) -> None:
    """The default :data:`Progress`: say nothing."""


@dataclass(frozen=True)
class ServiceStatus:
    """One row of ``callvault dev status``.

    ``state`` is ``running`` or ``stopped`` for the services the stack manages, ``embedded`` or
    ``external`` for ClickHouse (which the stack never starts).
    """

    name: str
    state: str
    endpoint: str
    pid: int | None = None
    data_dir: Path | None = None
    log_path: Path | None = None
    detail: str = ""

    @property
    def running(self) -> bool:
        return self.state == "running"

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (paths as strings); never contains a secret."""
        return {
            "name": self.name,
            "state": self.state,
            "pid": self.pid,
            "endpoint": self.endpoint,
            "data_dir": str(self.data_dir) if self.data_dir is not None else None,
            "log_path": str(self.log_path) if self.log_path is not None else None,
            "detail": self.detail,
        }


def home_dir(settings: Settings) -> Path:
    """``settings.home`` made absolute: it ends up in argv, config files and pid-file markers."""
    return settings.home.expanduser().absolute()


def cache_dir(settings: Settings) -> Path:
    return settings.cache_dir.expanduser().absolute()


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    """True if something is bound to ``host:port`` (SO_REUSEADDR, so TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def require_free_ports(service: str, ports: Iterable[tuple[str, int]]) -> None:
    """Refuse to start ``service`` if one of its ports is taken by some other process."""
    busy = [f"{port} ({what})" for what, port in ports if port_in_use(port)]
    if busy:
        which = f"port {busy[0]} is" if len(busy) == 1 else f"ports {', '.join(busy)} are"
        raise DevStackError(
            f"cannot start {service}: {LOOPBACK} {which} already in use by a process this "
            "stack did not start (another stack with other settings or home?); "
            "stop it or choose other ports (CALLVAULT_DEV__*_PORT)"
        )


def require_loopback(name: str, host: str, port: int | None, expected_port: int, hint: str) -> None:
    """Check that a client setting points at the port the dev stack actually serves."""
    if host not in _LOOPBACK_NAMES or port != expected_port:
        raise DevStackError(
            f"{name} does not point at the dev stack ({LOOPBACK}:{expected_port}); {hint}"
        )


def run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even when this thread already has a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


class Deadline:
    """A monotonic deadline for readiness loops."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._start = time.monotonic()
        self._end = self._start + seconds

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._start

    @property
    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self._end


@contextlib.contextmanager
def file_lock(path: Path, *, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing); ``on_wait`` runs if it is held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def raise_if_exited(proc: ManagedProcess, name: str) -> None:
    """A service that died while we waited for it: say so at once, with its last log lines."""
    if proc.is_running():
        return
    status = proc.exit_status()
    if status is None and proc.started_here_and_alive():
        return  # not recognisable for a moment (re-exec), but alive: keep waiting
    how = f" with status {status}" if status is not None else ""
    raise DevStackError(
        f"{name} exited{how} before answering; last lines of {proc.log_file}:\n" + proc.log_tail(30)
    )


def not_ready(
    proc: ManagedProcess, what: str, deadline: Deadline, last_error: str
) -> DevStackError:
    """The error for a service that is running but did not answer in time."""
    return DevStackError(
        f"{what} within {deadline.seconds:g} s (last error: {last_error}); last lines of "
        f"{proc.log_file}:\n{proc.log_tail(30)}"
    )
