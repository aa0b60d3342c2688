"""Fixtures of the CLI tests: ``cli`` runs the real entry point in-process with a module's
``settings`` fixture in the environment, as a user holding ``token`` (or none)."""

from __future__ import annotations

import io
import json

import pytest

from callvault.cli.auth import TOKEN_ENV
from callvault.cli.main import main
from callvault.settings import Settings, settings_env


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    for key, value in settings_env(settings).items():
        monkeypatch.setenv(key, value)

    def invoke(*args: str, token: str | None = None, stdin: str = "") -> tuple[int, str, str]:
        if token is None:
            monkeypatch.delenv(TOKEN_ENV, raising=False)
        else:
            monkeypatch.setenv(TOKEN_ENV, token)
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


@pytest.fixture
def users(cli):
    """``users("acme", olivia="owner", mia="member")`` -> each user's token: the first user is
    bootstrapped as the workspace's owner, the others are invited by them."""

    def make(workspace: str, **roles: str) -> dict[str, str]:
        tokens: dict[str, str] = {}
        for user, role in roles.items():
            if tokens:
                owner = next(iter(tokens.values()))
                args, token = ("--json",), owner
            else:
                assert role == "owner", "the first user is bootstrapped as owner"
                args, token = ("--bootstrap", "--json"), None
            code, out, err = cli("user", "create", user, "--workspace", workspace, "--role",
                                 role, *args, token=token)  # fmt: skip
            assert code == 0, err
            tokens[user] = json.loads(out)["token"]
        return tokens

    return make
