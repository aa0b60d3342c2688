"""Run the Debian ``sipp`` binary against a node (test helper).

sipp does not expand injection fields inside ``exec rtp_stream`` or ``authentication``, so the
scenario files carry ``@NAME@`` placeholders that are filled in here per run.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

SCENARIOS = Path(__file__).with_name("scenarios")


@dataclass
class SippResult:
    returncode: int
    output: str
    errors: str
    messages: str


async def run_sipp(
    scenario: str,
    target: tuple[str, int],
    workdir: Path,
    *,
    local_port: int,
    media_port: int,
    service: str = "agent-7",
    caller: str = "+4477009001",
    placeholders: dict[str, str] | None = None,
    timeout_s: float = 60.0,
) -> SippResult:
    sipp = shutil.which("sipp")
    assert sipp, "sipp is not installed (Debian package sip-tester; scripts/setup.sh installs it)"
    text = (SCENARIOS / scenario).read_text()
    for key, value in (placeholders or {}).items():
        text = text.replace(f"@{key}@", value)
    text = text.replace("@EXTRA_HEADERS@\n", "")
    scen = workdir / scenario
    scen.write_text(text)
    inj = workdir / "inject.csv"
    inj.write_text(f"SEQUENTIAL\n{caller};\n")
    msg_log, err_log = workdir / f"{scenario}.msg", workdir / f"{scenario}.err"
    proc = await asyncio.create_subprocess_exec(
        sipp, "-sf", str(scen), "-inf", str(inj), "-s", service,
        "-i", "127.0.0.1", "-p", str(local_port), "-mp", str(media_port),
        "-m", "1", "-nostdin", "-timeout", f"{int(timeout_s)}s", "-timeout_error",
        "-trace_msg", "-message_file", str(msg_log), "-trace_err", "-error_file", str(err_log),
        f"{target[0]}:{target[1]}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=workdir,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout_s + 15)
    read = lambda p: p.read_text(errors="replace") if p.exists() else ""  # noqa: E731
    return SippResult(
        proc.returncode or 0, out.decode(errors="replace"), read(err_log), read(msg_log)
    )
