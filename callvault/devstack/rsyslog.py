"""rsyslog (Debian ``rsyslog`` + ``rsyslog-gnutls``) on 127.0.0.1: the stack's SIEM stand-in.

It receives RFC 5425 (syslog over TLS, octet-counted framing) on ``settings.dev.syslog_port`` with
a server certificate from the stack's CA, and appends each raw message as one line to
:func:`messages_file`. It runs with its own config, work dir and pid file under
``<home>/rsyslog`` and never touches the system instance (no imuxsock, no /etc/rsyslog.d).
Readiness is a real TLS handshake verified against the stack's CA, host name included.

:func:`render_config`, :func:`split_keystore` and :func:`tls_handshake` are also what the SIEM
tests use to run their own throw-away instances (tests/sinks/siem/rsyslog.py).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import ssl
import time
from pathlib import Path
from typing import Any

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
)
from callvault.devstack.pki import Pki, ensure_ca, ensure_leaf
from callvault.devstack.process import ManagedProcess
from callvault.errors import DevStackError
from callvault.settings import Settings

NAME = "rsyslog"
_STOP_TIMEOUT_S = 10.0
#: Where Debian puts rsyslogd; sbin is often not on a user's PATH.
_SBIN = ("/usr/sbin/rsyslogd", "/sbin/rsyslogd")
_KEY_RE = re.compile(
    rb"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----\n?", re.S
)


def service_dir(settings: Settings) -> Path:
    return home_dir(settings) / "rsyslog"


def config_file(settings: Settings) -> Path:
    return service_dir(settings) / "rsyslog.conf"


def messages_file(settings: Settings) -> Path:
    """Where every received message lands, one raw RFC 5424 message per line."""
    return service_dir(settings) / "messages.log"


def endpoint(settings: Settings) -> str:
    return f"{LOOPBACK}:{settings.dev.syslog_port}"


def process(settings: Settings) -> ManagedProcess:
    return ManagedProcess(
        NAME, service_dir(settings), executable="rsyslogd", marker=str(config_file(settings))
    )


def all_ports(settings: Settings) -> list[tuple[str, int]]:
    return [("syslog TLS", settings.dev.syslog_port)]


def fingerprint(settings: Settings) -> dict[str, Any]:
    return {"syslog_port": settings.dev.syslog_port}


def check_settings(settings: Settings) -> None:
    """Nothing to validate beyond the port (pydantic checks its range); here for the stack."""


def pki(settings: Settings) -> Pki:
    """The stack's CA (shared with Kafka) and rsyslog's server keystore."""
    authority = ensure_ca(settings.kafka_ca_file.parent)
    ensure_leaf(authority, NAME, [LOOPBACK, "localhost"])
    return authority


def find_rsyslogd() -> str:
    found = shutil.which("rsyslogd") or next((p for p in _SBIN if Path(p).is_file()), None)
    if found is None:
        raise DevStackError(
            "rsyslogd was not found; install Debian's rsyslog and rsyslog-gnutls "
            "(scripts/setup.sh does: apt-get install rsyslog rsyslog-gnutls)"
        )
    return found


def split_keystore(keystore: Path, key_out: Path, cert_out: Path) -> None:
    """:func:`ensure_leaf` writes key + chain in one PEM; rsyslog wants them in separate files."""
    pem = keystore.read_bytes()
    key = _KEY_RE.search(pem)
    if key is None:
        raise DevStackError(f"no private key in {keystore}")
    key_out.write_bytes(key.group(0))
    key_out.chmod(0o600)
    cert_out.write_bytes(_KEY_RE.sub(b"", pem))


def render_config(
    *,
    directory: Path,
    ca_file: Path,
    port: int,
    output: Path,
    auth_mode: str = "anon",
) -> str:
    """An rsyslog config: imtcp with the gtls driver on ``127.0.0.1:port`` (octet counting is
    auto-detected), every message's raw text as one line of ``output``.

    ``directory`` holds ``work/``, ``server-cert.pem`` and ``server-key.pem``; ``auth_mode``
    ``anon`` (server authentication only) or ``x509/certvalid`` (clients must present a
    certificate from the CA).
    """
    return f"""\
global(
  workDirectory="{directory / "work"}"
  maxMessageSize="64k"
  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile="{ca_file}"
  defaultNetstreamDriverCertFile="{directory / "server-cert.pem"}"
  defaultNetstreamDriverKeyFile="{directory / "server-key.pem"}"
)
module(load="imtcp"
  streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="{auth_mode}")
template(name="raw" type="string" string="%rawmsg%\\n")
ruleset(name="siem") {{
  action(type="omfile" file="{output}" template="raw")
}}
input(type="imtcp" port="{port}" address="{LOOPBACK}" ruleset="siem")
"""


def write_config(
    directory: Path,
    authority: Pki,
    keystore: Path,
    port: int,
    output: Path,
    auth_mode: str = "anon",
) -> Path:
    """Split ``keystore`` next to the config, write ``<directory>/rsyslog.conf``; its path."""
    (directory / "work").mkdir(parents=True, exist_ok=True)
    split_keystore(keystore, directory / "server-key.pem", directory / "server-cert.pem")
    conf = directory / "rsyslog.conf"
    conf.write_text(
        render_config(
            directory=directory,
            ca_file=authority.ca_file,
            port=port,
            output=output,
            auth_mode=auth_mode,
        )
    )
    return conf


def command(rsyslogd: str, conf: Path) -> list[str]:
    """Foreground (``-n``), this config only, rsyslogd's own pid file in the work dir."""
    return [rsyslogd, "-n", "-f", str(conf), "-i", str(conf.parent / "work" / "rsyslogd.pid")]


def tls_handshake(port: int, ca_file: Path, timeout_s: float = 1.0) -> None:
    """One TLS handshake with ``127.0.0.1:port``, verified against ``ca_file``.

    Raises ``OSError`` if nothing accepts; an ``ssl.SSLError`` after the TCP connect means TLS
    is up (a server that requires client certificates refuses this anonymous probe).
    """
    ctx = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection((LOOPBACK, port), timeout=timeout_s) as raw,
        ctx.wrap_socket(raw, server_hostname=LOOPBACK) as tls,
        contextlib.suppress(OSError),
    ):
        tls.unwrap()  # close_notify: rsyslog logs a TLS error for every abrupt close


# -- lifecycle ------------------------------------------------------------------------------------


def start(settings: Settings, progress: Progress = quiet) -> int:
    """Write the certificate, key and config, spawn rsyslogd; returns its pid."""
    require_free_ports(NAME, all_ports(settings))
    rsyslogd = find_rsyslogd()
    authority = pki(settings)
    directory = service_dir(settings)
    conf = write_config(
        directory,
        authority,
        authority.keystore(NAME),
        settings.dev.syslog_port,
        messages_file(settings),
    )
    return process(settings).start(
        command(rsyslogd, conf), cwd=directory, meta=fingerprint(settings)
    )


def wait_ready(settings: Settings, timeout_s: float | None = None) -> str:
    """Poll with TLS handshakes until rsyslog accepts; returns the messages file's path."""
    proc = process(settings)
    deadline = Deadline(timeout_s if timeout_s is not None else settings.dev.start_timeout_s)
    ca_file = settings.kafka_ca_file
    last_error = "no attempt made"
    while True:
        raise_if_exited(proc, NAME)
        try:
            tls_handshake(settings.dev.syslog_port, ca_file)
            return str(messages_file(settings))
        except ssl.SSLError as exc:
            last_error = f"TLS: {exc}"  # our CA signed its certificate: a real failure
        except OSError as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        if deadline.expired:
            raise not_ready(
                proc, f"rsyslog did not complete a TLS handshake on {endpoint(settings)}",
                deadline, last_error,
            )  # fmt: skip
        time.sleep(0.1)


def stop(settings: Settings) -> int | None:
    return process(settings).stop(timeout_s=_STOP_TIMEOUT_S)


def status(settings: Settings, detail: str = "") -> ServiceStatus:
    return process(settings).status(
        NAME,
        endpoint=lambda m: f"tls://{LOOPBACK}:{m.get('syslog_port', settings.dev.syslog_port)}",
        data_dir=service_dir(settings),
        running=lambda _m: f"syslog over TLS (RFC 5425) into {messages_file(settings).name}",
        detail=detail,
    )
