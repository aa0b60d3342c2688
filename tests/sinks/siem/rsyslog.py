"""A real rsyslog (Debian rsyslog + rsyslog-gnutls) with its own config, work dir, pid file and
port, receiving RFC 5425 (syslog over TLS, octet counting) and writing each raw message as one
line of a file. Never the system instance. The config is the dev stack's
(:mod:`callvault.devstack.rsyslog`); this fixture adds what tests need: an ``auth_mode``, a
crash (SIGKILL) and a restart on the same files."""

from __future__ import annotations

import signal
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from callvault.devstack import rsyslog as devstack_rsyslog
from callvault.devstack.pki import Pki, ensure_leaf


@dataclass
class Rsyslog:
    directory: Path
    pki: Pki
    port: int
    auth_mode: str = "anon"  # or "x509/certvalid": the client must present a cert from our CA
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def output(self) -> Path:
        return self.directory / "received.log"

    @property
    def conf(self) -> Path:
        return self.directory / "rsyslog.conf"

    def write_config(self) -> None:
        keystore = ensure_leaf(self.pki, "rsyslog", ["127.0.0.1", "localhost"])
        devstack_rsyslog.write_config(
            self.directory, self.pki, keystore, self.port, self.output, self.auth_mode
        )

    def start(self, timeout: float = 15.0) -> None:
        argv = devstack_rsyslog.command(devstack_rsyslog.find_rsyslogd(), self.conf)
        with open(self.directory / "rsyslogd.stderr", "ab") as stderr:
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        """Poll until a TLS handshake succeeds (event based: no fixed sleep)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                err = (self.directory / "rsyslogd.stderr").read_text(errors="replace")
                raise RuntimeError(f"rsyslogd exited {self.proc.returncode}: {err[-2000:]}")
            try:
                devstack_rsyslog.tls_handshake(self.port, self.pki.ca_file)
                return
            except ssl.SSLError:
                return  # TLS is up (a cert-requiring server may refuse this anonymous probe)
            except OSError as exc:
                last = exc
                time.sleep(0.02)
        raise TimeoutError(f"rsyslogd not accepting TLS on {self.port}: {last!r}")

    def kill(self) -> None:
        """SIGKILL: a crash, not a graceful stop."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def lines(self) -> list[bytes]:
        if not self.output.exists():
            return []
        return [ln for ln in self.output.read_bytes().split(b"\n") if ln]
