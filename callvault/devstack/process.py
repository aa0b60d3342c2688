"""A background process owned through a pid file, safe against pid recycling.

The pid file (JSON) records the pid, the kernel start time of that pid and the argv. A process
counts as *ours* only while all of these hold: the pid exists and is not a zombie, its start time
(``/proc/<pid>/stat`` field 22) is the recorded one, ``argv[0]`` of ``/proc/<pid>/cmdline`` is the
expected executable and, if given, the marker (e.g. the service's config path) is among its
arguments. :meth:`ManagedProcess.stop` signals only such a process, so a stale pid file can never
make ``down`` kill an unrelated program that happens to reuse the number.

The process runs in its own session (detached from the terminal and from Ctrl+C of the caller),
with stdout and stderr appended to a log file next to the pid file. The previous log is kept as
``<name>.log.1``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from callvault.devstack.common import ServiceStatus
from callvault.errors import DevStackError

#: Children started by this interpreter, so they can be reaped (no zombies, no ResourceWarning).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}

_PROC = Path("/proc")


class ManagedProcess:
    """One service process: ``<directory>/<name>.pid`` and ``<directory>/<name>.log``.

    ``executable`` is the basename ``argv[0]`` must have (``"java"``, ``"weed"``); ``marker`` a
    string that must occur in one of its arguments, which ties the process to this instance (two
    stacks with different homes never mistake each other's processes).
    """

    def __init__(
        self, name: str, directory: Path, *, executable: str, marker: str | None = None
    ) -> None:
        self.name = name
        self.directory = directory
        self.executable = executable
        self.marker = marker

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name!r}, {str(self.directory)!r})"

    @property
    def pid_file(self) -> Path:
        return self.directory / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.directory / f"{self.name}.log"

    # -- inspection -----------------------------------------------------------------------------

    def _record(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.pid_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable or half-written: names no process
        return data if isinstance(data, dict) else {}

    def _owns(self, record: dict[str, Any]) -> bool:
        pid = record.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            return False
        _reap(pid)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return False  # another user's process: certainly not the one we started
        if not _PROC.is_dir():  # not Linux: the signal check is all we have
            return True
        stat = _proc_stat(pid)
        if stat is None or stat[0] == "Z":
            return False
        if record.get("start_ticks") != stat[1]:
            return False
        argv = _proc_cmdline(pid)
        if not argv or os.path.basename(argv[0]) != self.executable:
            return False
        return self.marker is None or any(self.marker in arg for arg in argv[1:])

    def pid(self) -> int | None:
        """The pid if the pid file names a live process of ours, else ``None``."""
        record = self._record()
        if record and self._owns(record):
            return int(record["pid"])
        return None

    def is_running(self) -> bool:
        return self.pid() is not None

    def has_stale_pid_file(self) -> bool:
        """A pid file exists but names no live process of ours (it crashed or was killed)."""
        record = self._record()
        return record is not None and not self._owns(record)

    def meta(self) -> dict[str, Any]:
        """What the caller recorded at :meth:`start` (e.g. the ports), if the process is ours."""
        record = self._record()
        if record and self._owns(record):
            meta = record.get("meta")
            return dict(meta) if isinstance(meta, dict) else {}
        return {}

    def status(
        self,
        name: str,
        *,
        endpoint: Callable[[dict[str, Any]], str],
        data_dir: Path,
        running: Callable[[dict[str, Any]], str],
        detail: str = "",
    ) -> ServiceStatus:
        """A ``dev status`` row; ``endpoint`` and ``running`` read the start-time metadata (the
        ports the process was really started with, not what the settings say now)."""
        pid = self.pid()
        meta = self.meta() if pid is not None else {}
        if not detail:
            if pid is not None:
                detail = running(meta)
            elif self.has_stale_pid_file():
                detail = "exited without `dev down` (stale pid file); see the log"
        return ServiceStatus(
            name=name,
            state="running" if pid is not None else "stopped",
            endpoint=endpoint(meta),
            pid=pid,
            data_dir=data_dir,
            log_path=self.log_file,
            detail=detail,
        )

    def exit_status(self, wait_s: float = 2.0) -> int | None:
        """Exit status of a process this interpreter started, once it has exited.

        Meant for a process found not running: a dying process stops looking like ours (empty
        cmdline) a moment before it can be reaped, hence the short wait. ``None`` if it was not
        started by this interpreter or does not exit within ``wait_s``.
        """
        record = self._record() or {}
        child = _CHILDREN.get(record.get("pid", -1))
        if child is None:
            return None
        try:
            return child.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            return None

    def started_here_and_alive(self) -> bool:
        """This interpreter started the process and it has not exited (whatever /proc shows
        for a moment: the JVM launcher, for one, re-executes itself after start)."""
        record = self._record() or {}
        child = _CHILDREN.get(record.get("pid", -1))
        return child is not None and child.poll() is None

    def log_tail(self, n: int = 30) -> str:
        """The last ``n`` lines of the log ('' if there is none)."""
        try:
            with self.log_file.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 64 * 1024))
                data = fh.read()
        except FileNotFoundError:
            return ""
        lines = data.decode("utf-8", errors="replace").splitlines()
        return "\n".join(lines[-n:])

    # -- control --------------------------------------------------------------------------------

    def start(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> int:
        """Start ``argv`` detached and record it; returns the pid.

        ``argv`` is written to the pid file and the log header, so it must not carry secrets
        (pass them in files). Refuses if the pid file already names a live process of ours.
        """
        if os.path.basename(argv[0]) != self.executable:
            raise ValueError(f"argv[0] {argv[0]!r} is not the expected {self.executable!r}")
        running = self.pid()
        if running is not None:
            raise DevStackError(f"{self.name} is already running (pid {running})")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.pid_file.unlink(missing_ok=True)
        if self.log_file.exists():
            os.replace(self.log_file, self.log_file.with_name(self.log_file.name + ".1"))
        with self.log_file.open("ab") as log:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            log.write(f"=== callvault: starting {self.name} at {stamp}\n".encode())
            log.write(f"=== {' '.join(argv)}\n".encode())
            log.flush()
            try:
                child = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=cwd,
                    env=dict(env) if env is not None else None,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                raise DevStackError(f"cannot start {self.name}: {argv[0]}: {exc}") from exc
        _CHILDREN[child.pid] = child
        stat = _proc_stat(child.pid)
        record = {
            "pid": child.pid,
            "start_ticks": stat[1] if stat is not None else None,
            "argv": list(argv),
            "meta": dict(meta or {}),
            "started_at": time.time(),
        }
        tmp = self.pid_file.with_name(self.pid_file.name + ".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self.pid_file)
        return child.pid

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """Stop the process the pid file names: SIGTERM to its group, SIGKILL after ``timeout_s``.

        Returns the pid that was stopped, or ``None`` if nothing of ours was running. The pid file
        is removed either way; an unrelated process reusing the pid is left alone.
        """
        record = self._record()
        if record is None:
            return None
        if not self._owns(record):
            self.pid_file.unlink(missing_ok=True)
            return None
        pid = int(record["pid"])
        _signal_group(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout_s):
            _signal_group(pid, signal.SIGKILL)
            if not _wait_gone(pid, 10.0):
                raise DevStackError(f"{self.name} (pid {pid}) survived SIGKILL")
        # Leftover members of its process group (the group id cannot be reused while they live).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return pid


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        if os.getpgid(pid) == pid:  # our processes lead their own session and group
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        _reap(pid)
        stat = _proc_stat(pid)
        if stat is None or stat[0] == "Z":
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None:
        child.poll()  # kept after exit, for exit_status()
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) from /proc/<pid>/stat, or None if it is gone."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def _proc_cmdline(pid: int) -> list[str]:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", errors="replace") for part in raw.split(b"\0") if part]
