"""``settings.keys`` and the provider factory (no broker needed)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from callvault.crypto.errors import KeyProviderError
from callvault.crypto.providers import AwsKmsProvider, LocalKeyFileProvider
from callvault.errors import SettingsError
from callvault.keys import build_provider, ensure_local_master_key, master_key_state
from callvault.settings import load_settings, settings_env


def test_defaults_put_the_key_file_under_home(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path)
    assert s.keys.provider == "local"
    assert s.master_key_file == tmp_path / "keys" / "master.json"
    custom = load_settings(home=tmp_path, keys={"local_key_file": str(tmp_path / "k.json")})
    assert custom.master_key_file == tmp_path / "k.json"


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLVAULT_KEYS__PROVIDER", "aws-kms")
    monkeypatch.setenv("CALLVAULT_KEYS__KMS_KEY_ID", "alias/callvault")
    monkeypatch.setenv("CALLVAULT_KEYS__KMS_REGION", "eu-central-1")
    s = load_settings()
    assert (s.keys.provider, s.keys.kms_key_id, s.keys.kms_region) == (
        "aws-kms",
        "alias/callvault",
        "eu-central-1",
    )
    env = settings_env(s)
    assert env["CALLVAULT_KEYS__PROVIDER"] == "aws-kms"
    assert env["CALLVAULT_KEYS__KMS_KEY_ID"] == "alias/callvault"


def test_kms_needs_a_key_id(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match=r"keys: .*needs kms_key_id"):
        load_settings(keys={"provider": "aws-kms"})
    monkeypatch.setenv("CALLVAULT_KEYS__PROVIDER", "aws-kms")
    monkeypatch.setenv("CALLVAULT_KEYS__KMS_KEY_ID", "")  # compose passes unset vars as ""
    with pytest.raises(SettingsError, match="needs kms_key_id"):
        load_settings()
    with pytest.raises(SettingsError, match=r"keys\.provider"):
        load_settings(keys={"provider": "vault"})


def test_local_key_file_is_created_lazily_outside_production(tmp_path: Path) -> None:
    s = load_settings(environment="test", home=tmp_path)
    assert not master_key_state(s).present
    provider = build_provider(s)
    assert isinstance(provider, LocalKeyFileProvider)
    assert provider.path == s.master_key_file
    assert stat.S_IMODE(os.stat(s.master_key_file).st_mode) == 0o600
    assert build_provider(s).key_id == provider.key_id  # opened, not replaced
    state = master_key_state(s)
    assert state.present and state.location == str(s.master_key_file)


def test_production_never_creates_a_key_file(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path).model_copy(update={"environment": "production"})
    with pytest.raises(KeyProviderError, match="never created implicitly"):
        build_provider(s)
    with pytest.raises(KeyProviderError, match="never created implicitly"):
        ensure_local_master_key(s)
    assert not s.master_key_file.exists()
    # an existing file is used
    LocalKeyFileProvider.create_if_missing(s.master_key_file)
    assert isinstance(build_provider(s), LocalKeyFileProvider)


def test_kms_provider(tmp_path: Path) -> None:
    s = load_settings(
        home=tmp_path,
        keys={"provider": "aws-kms", "kms_key_id": "alias/cv", "kms_region": "eu-west-1"},
    )
    provider = build_provider(s)
    assert isinstance(provider, AwsKmsProvider) and provider.key_id == "alias/cv"
    assert ensure_local_master_key(s) is None
    state = master_key_state(s)
    assert (state.provider, state.location, state.present) == (
        "aws-kms",
        "alias/cv (eu-west-1)",
        None,
    )
    assert not (tmp_path / "keys").exists()


def test_another_process_rotation_is_used_for_new_wraps(tmp_path: Path) -> None:
    """A running process must not keep wrapping under a master version rotated (and maybe
    retired) after it loaded the file."""
    path = tmp_path / "master.json"
    worker = LocalKeyFileProvider.create_if_missing(path)
    operator = LocalKeyFileProvider(path)
    old = worker.key_id
    new = operator.rotate()
    operator.retire(old)
    ctx = {"callvault:workspace": "acme", "callvault:key_id": "wk-1"}
    _, wrapped, master_id = worker.generate_data_key(ctx)
    assert master_id == new and worker.key_id == new and worker.is_current(new)
    assert LocalKeyFileProvider(path).unwrap(wrapped, master_id, ctx)
