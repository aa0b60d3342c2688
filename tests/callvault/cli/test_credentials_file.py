"""Where the CLI finds its token (pure: no broker)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callvault.cli.auth import TOKEN_ENV, credentials_file, presented_token
from callvault.errors import AuthenticationFailed
from callvault.files import replace_private
from callvault.settings import Settings, load_settings


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    return load_settings(home=tmp_path)


def test_no_token_means_the_local_operator(settings: Settings) -> None:
    assert presented_token(settings) is None


def test_env_wins_over_the_file(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    replace_private(credentials_file(settings), json.dumps({"token": "from-file"}).encode())
    assert presented_token(settings) == ("from-file", str(credentials_file(settings)))
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert presented_token(settings) == ("from-env", TOKEN_ENV)


def test_a_file_readable_by_others_is_refused(settings: Settings) -> None:
    path = credentials_file(settings)
    replace_private(path, json.dumps({"token": "t"}).encode())
    path.chmod(0o644)
    with pytest.raises(AuthenticationFailed, match="readable by other users"):
        presented_token(settings)


def test_a_damaged_file_is_an_authentication_error(settings: Settings) -> None:
    replace_private(credentials_file(settings), b"not json")
    with pytest.raises(AuthenticationFailed, match="not a credentials file"):
        presented_token(settings)
