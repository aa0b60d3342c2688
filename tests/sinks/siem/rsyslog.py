"""A real rsyslog (Debian rsyslog + rsyslog-gnutls) with its own config, work dir, pid file and
port, receiving RFC 5425 (syslog over TLS, octet counting) and writing each raw message as one
line of a file. Never the system instance."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from callvault.devstack.pki import Pki, ensure_leaf

_KEY_RE = re.compile(
    rb"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----\n?", re.S
)


def split_keystore(keystore: Path, key_out: Path, cert_out: Path) -> None:
    """``ensure_leaf`` writes key + chain in one PEM; rsyslog wants them in separate files."""
    pem = keystore.read_bytes()
    key = _KEY_RE.search(pem)
    assert key is not None, f"no private key in {keystore}"
    key_out.write_bytes(key.group(0))
    key_out.chmod(0o600)
    cert_out.write_bytes(_KEY_RE.sub(b"", pem))


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
        d = self.directory
        (d / "work").mkdir(parents=True, exist_ok=True)
        keystore = ensure_leaf(self.pki, "rsyslog", ["127.0.0.1", "localhost"])
        split_keystore(keystore, d / "server-key.pem", d / "server-cert.pem")
        self.conf.write_text(
            f"""
global(
  workDirectory="{d / "work"}"
  maxMessageSize="64k"
  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile="{self.pki.ca_file}"
  defaultNetstreamDriverCertFile="{d / "server-cert.pem"}"
  defaultNetstreamDriverKeyFile="{d / "server-key.pem"}"
)
module(load="imtcp"
  streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="{self.auth_mode}")
template(name="raw" type="string" string="%rawmsg%\\n")
ruleset(name="siem") {{
  action(type="omfile" file="{self.output}" template="raw")
}}
input(type="imtcp" port="{self.port}" address="127.0.0.1" ruleset="siem")
"""
        )

    def start(self, timeout: float = 15.0) -> None:
        rsyslogd = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
        with open(self.directory / "rsyslogd.stderr", "ab") as stderr:
            self.proc = subprocess.Popen(
                [rsyslogd, "-n", "-f", str(self.conf), "-i", str(self.directory / "rsyslogd.pid")],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        """Poll until a TLS handshake succeeds (event based: no fixed sleep)."""
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_file))
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                err = (self.directory / "rsyslogd.stderr").read_text(errors="replace")
                raise RuntimeError(f"rsyslogd exited {self.proc.returncode}: {err[-2000:]}")
            try:
                with (
                    socket.create_connection(("127.0.0.1", self.port), timeout=1) as raw,
                    ctx.wrap_socket(raw, server_hostname="127.0.0.1"),
                ):
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
