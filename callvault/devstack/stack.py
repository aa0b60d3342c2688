"""Start, stop and inspect the whole local stack: ``up``, ``down``, ``status``.

``up`` is idempotent: a running service is only re-verified (a real request), never restarted,
and a running service whose ports or version differ from the settings is reported instead of
silently kept. If anything fails, the services this ``up`` started are stopped again, so a failed
``up`` leaves nothing half-running. ``down`` stops only what the pid files under
``settings.home`` name. Concurrent ``up``/``down`` on one home serialise on a lock file.

ClickHouse is reported, never started: the dev default is an embedded chDB directory that the
stream worker opens (chDB locks its directory to one process); an ``http(s)://`` DSN is an
external server.

``up`` also creates the local master key file (``settings.master_key_file``, mode 0600) if it is
missing, except in production; status reports where the master key is (never the key).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from callvault.devstack import kafka, rsyslog, seaweed
from callvault.devstack.common import (
    Progress,
    ServiceStatus,
    file_lock,
    home_dir,
    quiet,
    require_free_ports,
)
from callvault.devstack.process import ManagedProcess
from callvault.errors import DevStackError
from callvault.settings import Settings

__all__ = [
    "MASTER_KEY",
    "SERVICE_NAMES",
    "ServiceStatus",
    "clickhouse_status",
    "down",
    "ensure_master_key",
    "master_key_status",
    "status",
    "up",
]

#: How long ``up`` re-verifies a service that was already running.
_RECHECK_TIMEOUT_S = 15.0
_SECRET_QUERY_KEYS = ("pass", "secret", "token", "key")


class _Service(Protocol):
    NAME: str

    def check_settings(self, settings: Settings) -> None: ...
    def process(self, settings: Settings) -> ManagedProcess: ...
    def fingerprint(self, settings: Settings) -> dict[str, Any]: ...
    def all_ports(self, settings: Settings) -> list[tuple[str, int]]: ...
    def start(self, settings: Settings, progress: Progress = ...) -> int: ...
    def wait_ready(self, settings: Settings, timeout_s: float | None = ...) -> Any: ...
    def stop(self, settings: Settings) -> int | None: ...
    def status(self, settings: Settings, detail: str = ...) -> ServiceStatus: ...


#: Start order. SeaweedFS and rsyslog first: they spawn instantly, so their boot overlaps Kafka's
#: preparation.
_START_ORDER: tuple[_Service, ...] = (seaweed, rsyslog, kafka)
#: Report order.
_REPORT_ORDER: tuple[_Service, ...] = (kafka, seaweed, rsyslog)
#: The services the stack starts and stops (ClickHouse is only reported).
SERVICE_NAMES: tuple[str, ...] = tuple(s.NAME for s in _REPORT_ORDER)
#: Name of the status row of the master key (a file or a KMS key, not a service).
MASTER_KEY = "master-key"


def up(settings: Settings, progress: Progress = quiet) -> list[ServiceStatus]:
    """Start every service that is not running and wait until each answers a real request.

    Returns one status per service (plus ClickHouse); ``detail`` says "started, ready after N s" or
    "already running". Raises :class:`DevStackError` (with the failing service's log tail).
    """
    for service in _START_ORDER:
        service.check_settings(settings)
    details: dict[str, str] = {}
    with _stack_lock(settings, progress):
        details[MASTER_KEY] = ensure_master_key(settings)
        started: list[_Service] = []
        spawned: dict[str, float] = {}
        to_start: list[_Service] = []
        for service in _START_ORDER:
            proc = service.process(settings)
            if proc.is_running():
                _require_same_settings(service, proc, settings)
            else:
                to_start.append(service)
        for service in to_start:  # every port checked before anything is spawned
            require_free_ports(service.NAME, service.all_ports(settings))
        try:
            for service in to_start:
                progress(f"starting {service.NAME}...")
                service.start(settings, progress)
                spawned[service.NAME] = time.monotonic()
                started.append(service)
            for service in _START_ORDER:
                if service in started:
                    service.wait_ready(settings)
                    took = time.monotonic() - spawned[service.NAME]
                    details[service.NAME] = f"started, ready after {took:.1f} s"
                else:
                    try:
                        service.wait_ready(
                            settings,
                            timeout_s=min(_RECHECK_TIMEOUT_S, settings.dev.start_timeout_s),
                        )
                    except DevStackError as exc:
                        raise DevStackError(
                            f"{service.NAME} is running but not answering; `callvault dev down` "
                            f"then `up` restarts it. {exc}"
                        ) from exc
                    details[service.NAME] = "already running"
        except BaseException:
            for service in reversed(started):
                with contextlib.suppress(Exception):
                    service.stop(settings)
            raise
    return _report(settings, details)


def down(
    settings: Settings, progress: Progress = quiet, *, only: Collection[str] | None = None
) -> list[ServiceStatus]:
    """Stop the services whose pid files live under ``settings.home``; others are untouched.

    ``only`` limits it to the named services (``"kafka"``, ``"seaweedfs"``, ``"rsyslog"``).
    """
    if only is not None:
        unknown = set(only) - set(SERVICE_NAMES)
        if unknown:
            raise DevStackError(f"unknown service(s) {sorted(unknown)}; known: {SERVICE_NAMES}")
    details: dict[str, str] = {}
    errors: list[str] = []
    with _stack_lock(settings, progress):
        for service in reversed(_START_ORDER):
            if only is not None and service.NAME not in only:
                continue
            try:
                pid = service.stop(settings)
            except DevStackError as exc:
                errors.append(str(exc))
                continue
            details[service.NAME] = f"stopped (was pid {pid})" if pid else "was not running"
    if errors:
        raise DevStackError("; ".join(errors))
    return _report(settings, details)


def status(settings: Settings) -> list[ServiceStatus]:
    """Each service's state from its pid file (no network); ClickHouse last."""
    return _report(settings, {})


def clickhouse_status(settings: Settings) -> ServiceStatus:
    dsn = settings.clickhouse_dsn
    if dsn.startswith("chdb://"):
        return ServiceStatus(
            name="clickhouse",
            state="embedded",
            endpoint=dsn,
            data_dir=Path(dsn.removeprefix("chdb://")),
            detail="embedded chDB, opened by the stream worker",
        )
    return ServiceStatus(
        name="clickhouse",
        state="external",
        endpoint=redact_dsn(dsn),
        detail="external ClickHouse server; not managed by the stack",
    )


def ensure_master_key(settings: Settings) -> str:
    """Create the local master key file if it is missing (not in production); a status detail."""
    from callvault.keys import ensure_local_master_key, master_key_state

    state = master_key_state(settings)
    if state.provider != "local" or state.present:
        return ""
    if settings.environment == "production":
        return "missing: production never creates a master key; restore the file"
    ensure_local_master_key(settings)
    return "created (mode 0600)"


def master_key_status(settings: Settings, detail: str = "") -> ServiceStatus:
    """Where the master key is: the local file's path or the KMS key id; never the key."""
    from callvault.keys import master_key_state

    state = master_key_state(settings)
    if state.provider == "aws-kms":
        return ServiceStatus(
            name=MASTER_KEY,
            state="external",
            endpoint=f"aws-kms:{state.location}",
            detail=detail or "AWS KMS; the master key never leaves KMS",
        )
    return ServiceStatus(
        name=MASTER_KEY,
        state="present" if state.present else "missing",
        endpoint=state.location,
        detail=detail
        or ("local key file" if state.present else "missing; `callvault dev up` creates it"),
    )


def redact_dsn(dsn: str) -> str:
    """The DSN without its password (userinfo or query parameter)."""
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if parts.password is not None:
        host = netloc.rpartition("@")[2]
        netloc = f"{parts.username or ''}:***@{host}"
    query = urlencode(
        [
            (k, "***" if any(s in k.lower() for s in _SECRET_QUERY_KEYS) else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _report(settings: Settings, details: dict[str, str]) -> list[ServiceStatus]:
    rows = [s.status(settings, detail=details.get(s.NAME, "")) for s in _REPORT_ORDER]
    return [
        *rows,
        clickhouse_status(settings),
        master_key_status(settings, details.get(MASTER_KEY, "")),
    ]


def _require_same_settings(service: _Service, proc: ManagedProcess, settings: Settings) -> None:
    recorded = proc.meta()
    wanted = service.fingerprint(settings)
    changed = [
        f"{key}={recorded[key]} (settings: {value})"
        for key, value in wanted.items()
        if key in recorded and recorded[key] != value
    ]
    if changed:
        raise DevStackError(
            f"{service.NAME} is already running (pid {proc.pid()}) with {', '.join(changed)}; "
            "run `callvault dev down` first to apply the new settings"
        )


def _stack_lock(settings: Settings, progress: Progress) -> contextlib.AbstractContextManager[None]:
    home = home_dir(settings)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return file_lock(
        home / ".devstack.lock",
        on_wait=lambda: progress("waiting for another `callvault dev` command on this home..."),
    )
