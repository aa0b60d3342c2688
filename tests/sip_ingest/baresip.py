"""Run the Debian ``baresip`` binary (package baresip-core) as a SIP client (test helper).

Every run gets its own config directory (``baresip -f DIR``) holding only what the run needs:
no UI module reading stdin, no sound card (the ``aufile`` source streams a WAV; no player is
loaded, so received audio goes nowhere), no NAT helpers (STUN/TURN/ICE/UPnP), no REGISTER.
baresip is driven by its command line: ``-e "/dial URI"`` places the call once the user agent is
ready (baresip appends the account's URI parameters, e.g. ``;transport=tls``, to the dialled
URI), ``-t SECONDS`` makes it quit after that many seconds, hanging up a call still up with a
BYE. ``aufile`` itself ends the call (BYE) within a second of reaching the end of its file.
Everything is bound to 127.0.0.1 (``net_interface``, ``sip_listen``, RTP).

Written against baresip 1.0.0 (Debian bookworm) with libre 1.1.0. That version has no switch to
verify a SIP/TLS server's certificate (``sip_verify_server`` came later) and does not verify it;
``sip_cafile`` is still set to the test CA, as a verifying client would have it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

MODULE_PATH = Path("/usr/lib/baresip/modules")
#: codecs, media encryption and the WAV source: loaded before the user agent starts
MODULES = ("g711.so", "srtp.so", "aufile.so")
#: ``account`` reads the accounts file, ``menu`` provides the /dial command ``-e`` runs
TMP_MODULES = ("account.so",)
APP_MODULES = ("menu.so",)


@dataclass
class BaresipResult:
    returncode: int | None
    output: str
    timed_out: bool

    def describe(self) -> str:
        state = "did not quit in time" if self.timed_out else f"exited with {self.returncode}"
        return f"baresip {state}; output:\n{self.output}"


@dataclass
class BaresipAccount:
    """One line of baresip's ``accounts`` file (see /usr/share/doc/baresip-core/examples)."""

    user: str
    password: str
    host: str
    port: int
    transport: str = "tls"
    mediaenc: str = "srtp-mand"
    audio_codecs: str = "PCMU"

    def line(self) -> str:
        uri = f"<sip:{self.user}@{self.host}:{self.port};transport={self.transport}>"
        params = {
            "auth_pass": self.password,
            "mediaenc": self.mediaenc,
            "audio_codecs": self.audio_codecs,
            "answermode": "manual",
            "regint": "0",  # no REGISTER: the node only takes INVITEs
            "ptime": "20",
        }
        return uri + "".join(f";{key}={value}" for key, value in params.items())


def write_config(
    config_dir: Path,
    account: BaresipAccount,
    *,
    sip_port: int,
    rtp_ports: tuple[int, int],
    audio_source: Path,
    ca_file: str | None = None,
) -> Path:
    """Write ``config``, ``accounts`` and an empty ``contacts`` into ``config_dir``."""
    config_dir.mkdir(parents=True, exist_ok=True)
    lines = {
        "poll_method": "epoll",
        "sip_listen": f"127.0.0.1:{sip_port}",
        "call_local_timeout": "10",
        "call_max_calls": "1",
        "audio_source": f"aufile,{audio_source}",
        # no player or alert module is loaded: received audio and ring tones go nowhere
        "ausrc_srate": "8000",
        "ausrc_channels": "1",
        "audio_level": "no",
        "rtp_ports": f"{rtp_ports[0]}-{rtp_ports[1]}",
        "rtp_timeout": "0",
        "rtcp_mux": "no",
        "jitter_buffer_delay": "1-5",
        "rtp_stats": "no",
        "net_interface": "127.0.0.1",
        "dns_server": "127.0.0.1:53",  # never ask a real resolver: every address is numeric
        "module_path": str(MODULE_PATH),
        # menu: no ring tones, no redial, no once-per-frame status line in the output
        "ringback_disabled": "yes",
        "redial_attempts": "0",
        "statmode_default": "off",
        "menu_bell": "no",
    }
    if ca_file is not None:
        lines["sip_cafile"] = ca_file
    text = [f"{key}\t{value}" for key, value in lines.items()]
    text += [f"module\t{m}" for m in MODULES]
    text += [f"module_tmp\t{m}" for m in TMP_MODULES]
    text += [f"module_app\t{m}" for m in APP_MODULES]
    (config_dir / "config").write_text("\n".join(text) + "\n")
    (config_dir / "accounts").write_text(account.line() + "\n")
    (config_dir / "contacts").write_text("")
    return config_dir


async def run_baresip(
    config_dir: Path,
    *commands: str,
    quit_after_s: int,
    timeout_s: float | None = None,
    sip_trace: bool = True,
) -> BaresipResult:
    """Run baresip with ``-e`` commands until it quits by itself after ``quit_after_s``.

    A baresip still running ``timeout_s`` later (default: ``quit_after_s + 10``) is killed; the
    result then says so and carries whatever it printed.
    """
    binary = shutil.which("baresip")
    assert binary, "baresip is not installed (Debian package baresip-core; scripts/setup.sh)"
    # line-buffered stdout: a baresip that has to be killed still leaves its output behind
    stdbuf = shutil.which("stdbuf")
    args = [stdbuf, "-oL"] if stdbuf else []
    args += [binary, "-4", "-f", str(config_dir), "-t", str(quit_after_s)]
    if sip_trace:
        args.append("-s")
    for command in commands:
        args += ["-e", command]
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=config_dir,
    )
    limit = timeout_s if timeout_s is not None else quit_after_s + 10.0
    output = bytearray()

    async def drain(stream: asyncio.StreamReader) -> None:
        while data := await stream.read(65536):
            output.extend(data)

    assert proc.stdout is not None
    reader = asyncio.create_task(drain(proc.stdout))
    timed_out = False
    try:
        try:
            await asyncio.wait_for(proc.wait(), limit)
        except TimeoutError:
            timed_out = True
            proc.terminate()  # baresip hangs up and exits on SIGTERM, printing why
            try:
                await asyncio.wait_for(proc.wait(), 3)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await asyncio.wait_for(reader, 5)
    finally:
        reader.cancel()
        if proc.returncode is None:  # the test was cancelled: leave no baresip behind
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    return BaresipResult(proc.returncode, output.decode(errors="replace"), timed_out)
