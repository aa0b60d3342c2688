"""The demo's own logic that needs no stack: where it sends audit events and how it reads them
back from rsyslog's file (the whole demo runs in ./scripts/demo.sh)."""

from __future__ import annotations

from pathlib import Path

import pytest

from callvault.audit import audit_event
from callvault.cli import demo
from callvault.devstack import rsyslog
from callvault.errors import DevStackError
from callvault.settings import load_settings
from sinks.siem.formats import to_rfc5424


def test_syslog_fan_out_goes_to_the_stacks_rsyslog_over_verified_tls(tmp_path: Path) -> None:
    settings = load_settings(environment="test", home=tmp_path, dev={"syslog_port": 26514})
    demo_settings, path = demo._with_syslog(settings)
    siem = demo_settings.siem
    assert siem.syslog_enabled and (siem.syslog_host, siem.syslog_port) == ("127.0.0.1", 26514)
    assert siem.syslog_ca_file == settings.kafka_ca_file
    assert path == rsyslog.messages_file(settings) == tmp_path / "rsyslog" / "messages.log"


def test_a_syslog_destination_the_user_chose_is_kept(tmp_path: Path) -> None:
    settings = load_settings(
        environment="test",
        home=tmp_path,
        siem={"syslog_enabled": True, "syslog_host": "siem.example", "syslog_port": 6514},
    )
    assert demo._with_syslog(settings) == (settings, None)


def test_reads_events_after_the_offset_from_rfc5424_lines(tmp_path: Path) -> None:
    old = audit_event("trunk.credential.create", actor_kind="USER", actor_id="cli:a")
    new = audit_event(
        "recording.decrypt",
        actor_kind="USER",
        actor_id='cli:"b"',
        workspace_id="demo-eu",
        target="call:c1",
        details={"note": "grüße"},  # non-ASCII: the MSG gets a BOM
    )
    path = tmp_path / "messages.log"
    path.write_bytes(to_rfc5424(old) + b"\n")
    offset = path.stat().st_size
    with path.open("ab") as fh:
        fh.write(to_rfc5424(new, payload="json") + b"\n")
    (event,) = demo._read_syslog(path, offset)
    assert event["action"] == "recording.decrypt" and event["eventId"] == new["event_id"]
    assert event["actor"] == 'cli:"b"' and event["target"] == "call:c1"


def test_missing_rsyslogd_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rsyslog.shutil, "which", lambda _: None)
    monkeypatch.setattr(rsyslog, "_SBIN", ())
    with pytest.raises(DevStackError, match="rsyslog-gnutls"):
        rsyslog.find_rsyslogd()
