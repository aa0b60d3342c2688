"""``callvault keys`` through the real entry point (exit codes included) against the test
broker, and the master key file of ``callvault dev up`` / ``dev status``."""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
from pathlib import Path

import pytest

from callvault.cli.main import EXIT_REFUSED, main
from callvault.control.keys import KafkaKeyStore, open_keys
from callvault.crypto.envelope import Aad, peek_key_id
from callvault.crypto.errors import KeyDestroyed
from callvault.crypto.keyring import open_artifact, seal_artifact
from callvault.devstack import stack
from callvault.settings import Settings, load_settings, settings_env
from tests.callvault.control.keyenv import audit_events, ensure_key_topics, key_settings

AAD = {c: Aad("acme", c, "transcript", "eu") for c in ("c1", "c2")}


def _cli(
    args: list[str],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stdin: str = "",
) -> tuple[int, str, str]:
    for key, value in settings_env(settings).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    capsys.readouterr()
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def settings(stack_settings: Settings, tmp_path: Path) -> Settings:
    settings = key_settings(stack_settings, tmp_path)
    asyncio.run(ensure_key_topics(settings))
    return settings


def _seed(settings: Settings) -> dict[str, bytes]:
    """Two sealed transcripts of workspace acme, one of globex."""

    async def go() -> dict[str, bytes]:
        async with open_keys(settings) as keys:
            blobs = {c: await seal_artifact(keys.ring, c.encode(), aad) for c, aad in AAD.items()}
            await seal_artifact(keys.ring, b"g", Aad("globex", "g1", "transcript", "eu"))
            return blobs

    return asyncio.run(go())


def _open(settings: Settings, blob: bytes, aad: Aad) -> bytes:
    async def go() -> bytes:
        async with open_keys(settings) as keys:
            return await open_artifact(keys.ring, blob, aad)

    return asyncio.run(go())


@pytest.mark.integration
def test_list_shows_no_key_material(settings, monkeypatch, capsys) -> None:
    blobs = _seed(settings)
    code, out, _ = _cli(["keys", "list", "--json"], settings, monkeypatch, capsys)
    assert code == 0
    rows = json.loads(out)
    assert [(r["workspace_id"], r["scope"]) for r in rows] == [
        ("acme", "WORKSPACE"),
        ("acme", "CALL"),
        ("acme", "CALL"),
        ("globex", "WORKSPACE"),
        ("globex", "CALL"),
    ]
    assert {r["key_id"] for r in rows} >= {peek_key_id(b) for b in blobs.values()}
    assert all("wrapped_key" not in r for r in rows)
    assert set(rows[0]) == {
        "key_id",
        "scope",
        "workspace_id",
        "call_id",
        "wrapping_key_id",
        "algorithm",
        "created_at",
        "destroyed",
        "call_started_at",
    }

    code, out, _ = _cli(
        ["keys", "list", "--workspace", "globex", "--json"], settings, monkeypatch, capsys
    )
    assert code == 0 and {r["workspace_id"] for r in json.loads(out)} == {"globex"}

    code, out, _ = _cli(["keys", "list"], settings, monkeypatch, capsys)
    assert code == 0 and "wrapped by" in out and peek_key_id(blobs["c1"]) in out


@pytest.mark.integration
def test_shred_call_needs_confirmation(settings, monkeypatch, capsys) -> None:
    blobs = _seed(settings)
    code, _, err = _cli(
        ["keys", "shred-call", "acme", "c1"], settings, monkeypatch, capsys, stdin="n\n"
    )
    assert code == 1 and "unrecoverable" in err and "aborted" in err
    code, _, err = _cli(["keys", "shred-call", "acme", "c1"], settings, monkeypatch, capsys)
    assert code == 1  # no answer (a script without --yes) is a refusal too
    assert _open(settings, blobs["c1"], AAD["c1"]) == b"c1"  # nothing was shredded

    code, out, err = _cli(
        ["keys", "shred-call", "acme", "c1", "--json"], settings, monkeypatch, capsys, stdin="y\n"
    )
    assert code == 0, err
    assert "24 h" in err
    result = json.loads(out)
    assert result["destroyed_key_ids"] == [peek_key_id(blobs["c1"])]
    with pytest.raises(KeyDestroyed):
        _open(settings, blobs["c1"], AAD["c1"])
    assert _open(settings, blobs["c2"], AAD["c2"]) == b"c2"

    code, out, err = _cli(
        ["keys", "shred-call", "acme", "c1", "--yes"], settings, monkeypatch, capsys
    )
    assert code == 0 and "already shredded" in out


@pytest.mark.integration
def test_rotate_and_shred_workspace(settings, monkeypatch, capsys) -> None:
    blobs = _seed(settings)
    code, out, err = _cli(
        ["keys", "rotate-workspace", "acme", "--json"], settings, monkeypatch, capsys
    )
    assert code == 0, err
    rotation = json.loads(out)
    assert set(rotation["rewrapped_call_key_ids"]) == {peek_key_id(b) for b in blobs.values()}
    assert _open(settings, blobs["c1"], AAD["c1"]) == b"c1"  # data untouched, still opens

    code, _, err = _cli(["keys", "rotate-workspace", "nobody"], settings, monkeypatch, capsys)
    assert code == EXIT_REFUSED
    assert err == "error: workspace 'nobody' has no workspace key yet: nothing to rotate\n"

    code, _, err = _cli(["keys", "shred-workspace", "acme"], settings, monkeypatch, capsys)
    assert code == 1 and "Shred workspace acme?" in err
    code, out, err = _cli(
        ["keys", "shred-workspace", "acme", "--yes"], settings, monkeypatch, capsys
    )
    assert code == 0, err
    assert "shredded workspace acme: destroyed 3 key(s)" in out
    for c, blob in blobs.items():
        with pytest.raises(KeyDestroyed):
            _open(settings, blob, AAD[c])

    async def listed() -> list[bool]:
        async with KafkaKeyStore(settings) as store:
            return [r["destroyed"] for r in await store.by_workspace("acme")]

    assert all(asyncio.run(listed()))
    actions = [e["action"] for e in asyncio.run(audit_events(settings))]
    assert actions == ["key.workspace.rotate", "key.workspace.rotate", "key.workspace.shred"]


@pytest.mark.integration
def test_rotate_master_and_retire(settings, monkeypatch, capsys) -> None:
    blobs = _seed(settings)
    before = json.loads(settings.master_key_file.read_text())["current"]
    code, out, err = _cli(
        ["keys", "rotate-master", "--retire-old", "--json"], settings, monkeypatch, capsys
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["previous_master_key_id"] == before
    assert result["retired_master_key_ids"] == [before]
    assert len(result["rewrapped_key_ids"]) == 2  # acme's and globex's workspace keys
    doc = json.loads(settings.master_key_file.read_text())
    assert list(doc["keys"]) == [result["master_key_id"]] == [doc["current"]]
    assert stat.S_IMODE(os.stat(settings.master_key_file).st_mode) == 0o600
    # a fresh process, which only has the new master version, still opens the data
    assert _open(settings, blobs["c2"], AAD["c2"]) == b"c2"

    code, out, _ = _cli(["keys", "rotate-master"], settings, monkeypatch, capsys)
    assert code == 0 and "re-wrapped 2 workspace key(s)" in out
    actions = [e["action"] for e in asyncio.run(audit_events(settings))]
    assert actions == ["key.master.rotate", "key.master.retire", "key.master.rotate"]


# -- the master key file of the dev stack ----------------------------------------------------


def test_dev_up_creates_the_master_key_file_private(tmp_path: Path) -> None:
    settings = load_settings(environment="dev", home=tmp_path / "home")
    assert stack.master_key_status(settings).state == "missing"
    assert stack.ensure_master_key(settings) == "created (mode 0600)"
    path = settings.master_key_file
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    content = path.read_text()
    assert stack.ensure_master_key(settings) == ""  # idempotent: never replaced
    assert path.read_text() == content
    row = stack.master_key_status(settings)
    assert (row.state, row.endpoint) == ("present", str(path))

    prod = settings.model_copy(update={"environment": "production", "home": tmp_path / "p"})
    assert "production never creates" in stack.ensure_master_key(prod)
    assert not prod.master_key_file.exists()

    kms = load_settings(home=tmp_path / "k", keys={"provider": "aws-kms", "kms_key_id": "alias/x"})
    assert stack.ensure_master_key(kms) == ""
    assert stack.master_key_status(kms).endpoint == "aws-kms:alias/x"


def test_dev_status_json_shows_the_key_path_not_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings(environment="dev", home=tmp_path)
    stack.ensure_master_key(settings)
    code, out, _ = _cli(["dev", "status", "--json"], settings, monkeypatch, capsys)
    assert code == 0
    rows = {row["name"]: row for row in json.loads(out)}
    key = rows["master-key"]
    assert key["state"] == "present" and key["endpoint"] == str(tmp_path / "keys" / "master.json")
    assert key["pid"] is None
    for secret in json.loads(settings.master_key_file.read_text())["keys"].values():
        assert secret not in out


def test_keys_init_creates_once_and_refuses_to_replace_a_lost_master(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = settings.master_key_file
    code, out, _ = _cli(["keys", "init", "--json"], settings, monkeypatch, capsys)
    first = json.loads(out)
    assert code == 0 and first["created"] is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # the audit chain's signing key is provisioned too (production workers never create it)
    signing = Path(first["audit_signing_key"])
    assert stat.S_IMODE(signing.stat().st_mode) == 0o600
    assert Path(first["audit_public_key"]).exists()
    code, out, _ = _cli(["keys", "init", "--json"], settings, monkeypatch, capsys)
    again = json.loads(out)
    assert code == 0 and again["created"] is False  # idempotent
    assert again["audit_public_key_id"] == first["audit_public_key_id"]
    _seed(settings)  # workspace keys now wrapped by this master
    path.unlink()  # the master key file is lost
    code, _, err = _cli(["keys", "init"], settings, monkeypatch, capsys)
    assert code == EXIT_REFUSED and "restore that key file" in err
    assert not path.exists()
