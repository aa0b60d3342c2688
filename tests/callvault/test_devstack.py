"""The dev stack: pid-file process control (unit), real Kafka + SeaweedFS up/down (integration).

Integration tests run their own stacks under tmp homes on free ports, so they never touch the
shared test stack or a developer's ``callvault dev up``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from callvault.cli.main import EXIT_REFUSED, main
from callvault.devstack import kafka, rsyslog, seaweed, stack
from callvault.devstack.common import port_in_use
from callvault.devstack.process import ManagedProcess
from callvault.errors import DevStackError
from callvault.settings import DevStackSettings, Settings, load_settings
from tests.conftest import TEST_PORTS

SLEEP = shutil.which("sleep") or "/bin/sleep"
SH = shutil.which("sh") or "/bin/sh"


# -- helpers --------------------------------------------------------------------------------------


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def _wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return False


#: Ports other stacks on this machine may use: the dev defaults and the shared test stack's,
#: with SeaweedFS gRPC ports (+10000).
_RESERVED = {
    p + off
    for p in (
        *DevStackSettings().model_dump(exclude={"start_timeout_s"}).values(),
        *TEST_PORTS.values(),
    )
    if isinstance(p, int)
    for off in (0, 10000)
}


def _free_ports(
    count: int, *, low: int, high: int, grpc_offset: int = 0, taken: set[int]
) -> list[int]:
    """``count`` distinct free loopback ports in [low, high] (``port + grpc_offset`` free too)."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(low, high)
        pair = {port, port + grpc_offset}
        if pair & (taken | _RESERVED) or any(port_in_use(p) for p in pair):
            continue
        taken |= pair
        ports.append(port)
    return ports


def isolated_settings(home: Path, **dev: object) -> Settings:
    # Everything below the ephemeral range (32768+ on Linux), where a port that is free now can
    # become the local end of some outgoing connection before the service binds it.
    taken: set[int] = set()
    kafka_port, controller, syslog = _free_ports(3, low=23000, high=29999, taken=taken)
    s3, master, volume, filer, admin = _free_ports(
        5, low=20000, high=22700, grpc_offset=10000, taken=taken
    )
    ports = {
        "kafka_port": kafka_port,
        "kafka_controller_port": controller,
        "s3_port": s3,
        "weed_master_port": master,
        "weed_volume_port": volume,
        "weed_filer_port": filer,
        "weed_admin_port": admin,
        "syslog_port": syslog,
        "start_timeout_s": 60.0,
    }
    return load_settings(
        environment="test",
        home=home,
        dev={**ports, **dev},
        kafka={"bootstrap": f"127.0.0.1:{kafka_port}"},
        s3={"endpoint": f"http://127.0.0.1:{s3}"},
    )


def _listening(pid: int) -> set[tuple[str, str, int]]:
    """(proto, ip, port) of every socket ``pid`` listens on (TCP LISTEN, or any bound UDP)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if inode not in inodes or (proto.startswith("tcp") and state != "0A"):
                continue
            hex_ip, hex_port = local.split(":")
            raw = bytes.fromhex(hex_ip)
            if len(raw) == 4:
                ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
            else:  # /proc prints IPv6 as four little-endian 32-bit words
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                ip = socket.inet_ntop(socket.AF_INET6, words)
            found.add((proto, ip, int(hex_port, 16)))
    return found


# -- process.py -----------------------------------------------------------------------------------


def test_process_start_and_stop(tmp_path: Path) -> None:
    proc = ManagedProcess("sleeper", tmp_path, executable="sleep", marker="3600")
    assert proc.pid() is None and not proc.is_running()
    pid = proc.start([SLEEP, "3600"], meta={"port": 1})
    assert proc.is_running() and proc.pid() == pid
    assert proc.meta() == {"port": 1}
    assert os.getpgid(pid) == pid  # own session and group: detached from the caller
    with pytest.raises(DevStackError, match="already running"):
        proc.start([SLEEP, "3600"])
    assert proc.stop(timeout_s=5) == pid
    assert _wait_gone(pid)
    assert not proc.pid_file.exists() and not proc.is_running()
    assert proc.stop() is None  # nothing left to stop
    assert "starting sleeper" in proc.log_tail()


def test_process_stop_escalates_to_sigkill_for_the_whole_group(tmp_path: Path) -> None:
    proc = ManagedProcess("stubborn", tmp_path, executable="sh")
    script = f'trap "" TERM; {SLEEP} 3600 & echo "child=$!"; wait; wait'
    pid = proc.start([SH, "-c", script])
    deadline = time.monotonic() + 5
    lines: list[str] = []
    while not lines and time.monotonic() < deadline:
        lines = [line for line in proc.log_tail().splitlines() if line.startswith("child=")]
        time.sleep(0.05)
    child = int(lines[0].removeprefix("child="))
    started = time.monotonic()
    assert proc.stop(timeout_s=0.5) == pid
    assert time.monotonic() - started < 5
    assert _wait_gone(pid) and _wait_gone(child)


def test_process_reports_exit_status_and_log(tmp_path: Path) -> None:
    proc = ManagedProcess("crasher", tmp_path, executable="sh")
    proc.start([SH, "-c", "echo 'fatal: cannot bind'; exit 3"])
    deadline = time.monotonic() + 5
    while proc.is_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not proc.is_running()
    assert proc.has_stale_pid_file()
    assert proc.exit_status() == 3
    assert "fatal: cannot bind" in proc.log_tail(5)


def test_process_log_rotates_and_tails(tmp_path: Path) -> None:
    proc = ManagedProcess("talker", tmp_path, executable="sh")
    for run in range(2):
        proc.start([SH, "-c", f"for i in $(seq 1 100); do echo run{run}-line$i; done"])
        while proc.is_running():
            time.sleep(0.02)
    assert proc.log_tail(3).splitlines() == ["run1-line98", "run1-line99", "run1-line100"]
    previous = proc.log_file.with_name("talker.log.1").read_text()
    assert "run0-line100" in previous and "run1" not in previous


def test_pid_recycling_guard_never_signals_a_stranger(tmp_path: Path) -> None:
    stranger = subprocess.Popen([SLEEP, "3600"], start_new_session=True)
    try:
        proc = ManagedProcess("kafka", tmp_path, executable="java")
        real_ticks = int(
            Path(f"/proc/{stranger.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        )

        def record(**fields: object) -> None:
            proc.pid_file.write_text(json.dumps({"pid": stranger.pid, **fields}))

        # The pid now belongs to `sleep`, not the recorded java.
        record(start_ticks=real_ticks, argv=["java"])
        assert not proc.is_running() and proc.has_stale_pid_file()
        assert proc.stop() is None
        assert not proc.pid_file.exists()
        # Right executable name but another start time: a recycled pid.
        as_sleep = ManagedProcess("kafka", tmp_path, executable="sleep")
        record(start_ticks=real_ticks - 1)
        assert not as_sleep.is_running()
        assert as_sleep.stop() is None
        # Right executable and start time, but not this instance's marker.
        other_home = ManagedProcess("kafka", tmp_path, executable="sleep", marker="/other/home")
        record(start_ticks=real_ticks)
        assert not other_home.is_running()
        assert other_home.stop() is None
        # Garbage in the pid file names nothing.
        proc.pid_file.write_text("not json")
        assert not as_sleep.is_running()
        assert stranger.poll() is None, "an unrelated process was signalled"
        # And the matching record is ours: that is what `down` stops.
        record(start_ticks=real_ticks)
        assert as_sleep.pid() == stranger.pid
    finally:
        stranger.kill()
        stranger.wait()


# -- stack (integration) --------------------------------------------------------------------------


@pytest.mark.integration
def test_up_status_idempotent_up_down(tmp_path: Path) -> None:
    settings = isolated_settings(tmp_path / "home")
    try:
        first = {s.name: s for s in stack.up(settings)}
        assert first["kafka"].running and first["seaweedfs"].running
        assert first["kafka"].detail.startswith("started")
        assert first["clickhouse"].state == "embedded"
        assert first["clickhouse"].endpoint == settings.clickhouse_dsn
        pids = {name: first[name].pid for name in stack.SERVICE_NAMES}

        # Everything listens on loopback only, on the configured ports (no stray listeners).
        for name in stack.SERVICE_NAMES:
            pid = pids[name]
            assert pid is not None
            sockets = _listening(pid)
            assert sockets, f"{name} listens on nothing"
            assert {ip for _, ip, _ in sockets} <= {"127.0.0.1", "::ffff:127.0.0.1"}, sockets
        assert {p for *_, p in _listening(pids["kafka"])} == {
            p for _, p in kafka.all_ports(settings)
        }
        weed_ports = {p for proto, _, p in _listening(pids["seaweedfs"]) if proto.startswith("tcp")}
        assert weed_ports == {p for _, p in seaweed.all_ports(settings)}
        assert {p for *_, p in _listening(pids["rsyslog"])} == {settings.dev.syslog_port}
        rsyslog.tls_handshake(settings.dev.syslog_port, settings.kafka_ca_file)  # verified TLS

        # One bucket per region, reachable with the configured credentials.
        client = seaweed.s3_client(settings)
        names = {b["Name"] for b in client.list_buckets()["Buckets"]}
        assert set(seaweed.bucket_names(settings)) <= names

        # The secret lives only in the 0600 identities file: not in argv, logs, pid files, status.
        secret = settings.s3.secret_key.get_secret_value()
        identities = seaweed.identities_file(settings)
        assert stat.S_IMODE(identities.stat().st_mode) == 0o600
        for path in (settings.home).rglob("*"):
            if path.is_file() and path != identities and path.suffix in {".log", ".pid", ".json"}:
                assert secret not in path.read_text(errors="replace"), path
        dumped = json.dumps([s.to_json() for s in stack.status(settings)])
        assert secret not in dumped

        # A second `up` is a no-op that reports "already running".
        started = time.monotonic()
        second = {s.name: s for s in stack.up(settings)}
        assert time.monotonic() - started < 15
        for name in stack.SERVICE_NAMES:
            assert second[name].pid == pids[name]
            assert second[name].detail == "already running"

        # Changed settings are not silently ignored while running.
        changed = settings.model_copy(
            update={"dev": settings.dev.model_copy(update={"kafka_heap": "512m"})}
        )
        with pytest.raises(DevStackError, match="kafka_heap=768m"):
            stack.up(changed)

        rows = {s.name: s for s in stack.status(settings)}
        for name in stack.SERVICE_NAMES:
            row = rows[name]
            assert row.running and row.pid == pids[name]
            assert row.log_path is not None and row.log_path.is_file()
            assert row.data_dir is not None and row.data_dir.is_dir()
            assert json.loads(json.dumps(row.to_json()))["state"] == "running"
    finally:
        down = {s.name: s for s in stack.down(settings)}
    for name in stack.SERVICE_NAMES:
        assert down[name].state == "stopped"
        assert down[name].detail == f"stopped (was pid {pids[name]})"
        assert _wait_gone(pids[name])
    rows = {s.name: s for s in stack.status(settings)}
    assert all(
        rows[name].state == "stopped" and rows[name].pid is None for name in stack.SERVICE_NAMES
    )
    assert all(
        s.detail == "was not running" for s in stack.down(settings) if s.name in stack.SERVICE_NAMES
    )


@pytest.mark.integration
def test_up_refuses_a_port_held_by_someone_else(tmp_path: Path) -> None:
    settings = isolated_settings(tmp_path / "home")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", settings.dev.kafka_port))
        holder.listen()
        with pytest.raises(DevStackError) as err:
            stack.up(settings)
        assert f"port {settings.dev.kafka_port} (kafka) is already in use" in str(err.value)
    # Checked before anything was spawned: nothing is left running.
    assert not any(s.running for s in stack.status(settings))


@pytest.mark.integration
def test_failed_start_reports_the_log_tail_and_leaves_nothing_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A JVM that cannot start: the broker process dies right away, as on any fatal start-up error.
    # The home is relative (CALLVAULT_HOME=.callvault): services run with their own cwd, so every
    # path on their command lines must have been made absolute.
    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(Path(".callvault"), kafka_heap="1k")
    with pytest.raises(DevStackError) as err:
        stack.up(settings)
    message = str(err.value)
    assert "kafka exited with status 1 before answering" in message, message
    assert "Too small maximum heap" in message, message  # from the log tail
    assert str(tmp_path / ".callvault" / "kafka" / "kafka.log") in message, message
    # SeaweedFS had been started by this `up`; it was stopped again.
    assert not any(s.running for s in stack.status(settings))


@pytest.mark.integration
def test_weed_failure_reports_the_log_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A port taken between the pre-flight check and the spawn: weed itself refuses and exits.
    settings = isolated_settings(tmp_path / "home")
    monkeypatch.setattr(seaweed, "require_free_ports", lambda *a, **k: None)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", settings.dev.weed_master_port))
        holder.listen()
        seaweed.start(settings)
        with pytest.raises(DevStackError) as err:
            seaweed.wait_ready(settings, timeout_s=30)
    message = str(err.value)
    assert "seaweedfs exited" in message, message
    assert f"port {settings.dev.weed_master_port}" in message, message  # weed's words, from the log
    assert not seaweed.process(settings).is_running()


@pytest.mark.integration
def test_shared_stack_fixture_serves_kafka_and_s3(stack_settings: Settings) -> None:
    assert kafka.wait_ready(stack_settings, timeout_s=10)["brokers"]
    assert set(seaweed.wait_ready(stack_settings, timeout_s=10)) == set(
        seaweed.bucket_names(stack_settings)
    )


# -- CLI ------------------------------------------------------------------------------------------


def _run_cli(args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> int:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_status_json_on_an_empty_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _run_cli(["dev", "status", "--json"], {"CALLVAULT_HOME": str(tmp_path)}, monkeypatch)
    assert code == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["kafka"]["state"] == rows["seaweedfs"]["state"] == "stopped"
    assert rows["clickhouse"]["state"] == "embedded"
    assert rows["kafka"]["log_path"] == str(tmp_path / "kafka" / "kafka.log")


def test_cli_error_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"CALLVAULT_HOME": str(tmp_path), "CALLVAULT_S3__BUCKET_PREFIX": "T_"}
    assert _run_cli(["dev", "up"], env, monkeypatch) == EXIT_REFUSED
    err = capsys.readouterr().err
    assert err.startswith("error: bucket name 'T_eu'") and err.count("\n") == 1
    assert not any(tmp_path.iterdir()), "nothing is created before settings are validated"


def test_cli_help(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for args in (
        ["dev", "--help"],
        ["dev", "up", "--help"],
        ["dev", "down", "--help"],
        ["dev", "status", "--help"],
    ):
        assert _run_cli(args, {}, monkeypatch) == 0
        assert "Usage: callvault dev" in capsys.readouterr().out


def test_clickhouse_external_dsn_is_redacted() -> None:
    settings = load_settings(
        clickhouse={"dsn": "https://analyst:hunter2@ch.example:8443/?password=x&db=a"}
    )
    row = stack.clickhouse_status(settings)
    assert row.state == "external"
    assert "hunter2" not in row.endpoint and "password=x" not in row.endpoint
    assert row.endpoint.startswith("https://analyst:***@ch.example:8443/")
