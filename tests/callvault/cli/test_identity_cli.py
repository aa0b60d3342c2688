"""Identity and RBAC through the real entry point against the test broker: bootstrap, invitations,
denials (wrong role, wrong workspace, revoked token), login/logout and their audit trail."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from callvault.cli.auth import TOKEN_ENV, authorize, credentials_file
from callvault.cli.main import EXIT_REFUSED
from callvault.control.workspaces import WorkspaceDirectory
from callvault.errors import PermissionDenied
from callvault.settings import Settings
from callvault.topics import Topics, ensure_topics
from tests.callvault.cli.helpers import ok_json as _json
from tests.callvault.control.keyenv import audit_events
from tests.conftest import topic_prefix

pytestmark = pytest.mark.integration

TOPICS = ("control.identities", "control.workspaces", "control.trunks", "audit.events")


@pytest.fixture
def settings(stack_settings: Settings, tmp_path: Path) -> Settings:
    settings = stack_settings.model_copy(
        update={
            "home": tmp_path / "home",
            "kafka": stack_settings.kafka.model_copy(update={"topic_prefix": topic_prefix("i")}),
        }
    )

    async def setup() -> None:
        topics = Topics(settings)
        await ensure_topics(settings, [topics.specs[name] for name in TOPICS])
        async with WorkspaceDirectory(settings) as d:
            await d.create("acme", region="eu")
            await d.create("globex", region="na")

    asyncio.run(setup())
    return settings


def _events(settings: Settings) -> list[dict[str, Any]]:
    return asyncio.run(audit_events(settings))


def test_bootstrap_invite_and_every_denial_path(settings, cli, monkeypatch):
    owner = _json(cli("user", "create", "olivia", "--workspace", "acme", "--role", "owner",
                      "--bootstrap", "--json"))  # fmt: skip
    assert owner["user"]["memberships"] == {"acme": "owner"}
    t_owner = owner["token"]
    assert t_owner.startswith("cvt_")

    # bootstrap only for an empty workspace; nothing else without a token
    code, _, err = cli("user", "create", "mallory", "--workspace", "acme", "--role", "owner",
                       "--bootstrap")  # fmt: skip
    assert code == EXIT_REFUSED and "already has members" in err
    code, _, err = cli("user", "create", "mallory", "--workspace", "acme", "--role", "member")
    assert code == EXIT_REFUSED and "not logged in" in err

    member = _json(cli("user", "create", "mia", "--workspace", "acme", "--role", "member",
                       "--json", token=t_owner))  # fmt: skip
    t_member = member["token"]
    me = _json(cli("whoami", "--json", token=t_member))
    assert me["user_id"] == "mia" and me["workspaces"]["acme"]["role"] == "member"
    assert "recordings.download" not in me["workspaces"]["acme"]["permissions"]

    # wrong role: a member may not download recordings, nor invite
    monkeypatch.setenv(TOKEN_ENV, t_member)
    with pytest.raises(PermissionDenied, match=r"'mia' \(role 'member'\) lacks recordings\.down"):
        asyncio.run(authorize(settings, "acme", "recordings.download", action="recording.download"))
    monkeypatch.setenv(TOKEN_ENV, t_owner)
    assert asyncio.run(authorize(settings, "acme", "recordings.download", action="x")) is not None
    code, _, err = cli("user", "create", "max", "--workspace", "acme", "--role", "member",
                       token=t_member)  # fmt: skip
    assert code == EXIT_REFUSED and "lacks users.invite" in err

    # an admin cannot make anyone owner
    _json(cli("user", "grant", "mia", "--workspace", "acme", "--role", "admin", "--json",
              token=t_owner))  # fmt: skip
    code, _, err = cli("user", "grant", "mia", "--workspace", "acme", "--role", "owner",
                       token=t_member)  # fmt: skip
    assert code == EXIT_REFUSED and "only owners may grant owner" in err

    # wrong workspace: owner of acme is nobody in globex; trunk commands check trunks.manage
    code, _, err = cli("trunk", "create", "pbx-1", "--workspace", "globex", token=t_owner)
    assert code == EXIT_REFUSED and "not a member of workspace 'globex'" in err
    issued = _json(cli("trunk", "create", "pbx-1", "--workspace", "acme", "--json", token=t_owner))
    assert issued["trunk_id"] == "pbx-1"

    # revoked token: refused from the next command on
    _json(cli("token", "revoke", member["token_id"], "--json", token=t_owner))
    code, _, err = cli("whoami", token=t_member)
    assert code == EXIT_REFUSED and "revoked" in err
    assert t_member not in err

    events = _events(settings)
    denied = {(e["action"], e["actor"]["id"]) for e in events if e["outcome"] == "DENIED"}
    assert any(a == "user.create" and who.startswith("cli:") for a, who in denied)
    assert {
        ("recording.download", "mia"),
        ("user.create", "mia"),
        ("user.grant", "mia"),
        ("trunk.credential.issue", "olivia"),
        ("auth.token", "mia"),
    } <= denied
    ok = [(e["action"], e["actor"]["id"]) for e in events if e["outcome"] == "SUCCESS"]
    assert ("trunk.credential.issue", "olivia") in ok
    assert ("token.revoke", "olivia") in ok
    assert ("user.create", "olivia") in ok
    assert all(t_owner not in json.dumps(e, default=str) for e in events)


def test_login_logout_credentials_file_and_custom_roles(settings, cli):
    owner = _json(cli("user", "create", "olivia", "--workspace", "globex", "--role", "owner",
                      "--bootstrap", "--json"))  # fmt: skip
    code, _, err = cli("login", "--token", "cvt_0123456789ab_" + "A" * 43)
    assert code == EXIT_REFUSED and "unknown API token" in err
    code, out, err = cli("login", stdin=owner["token"] + "\n")
    assert code == 0, err
    assert "logged in as olivia" in out
    path = credentials_file(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _json(cli("whoami", "--json"))["token_source"] == str(path)

    role = _json(cli("role", "create", "billing", "--workspace", "globex",
                     "--permission", "billing.view", "--json"))  # fmt: skip
    assert role["permissions"] == ["billing.view"]
    listed = _json(cli("role", "list", "--workspace", "globex", "--json"))
    assert {r["name"] for r in listed} == {"owner", "admin", "member", "analyst", "auditor",
                                           "billing"}  # fmt: skip
    created = _json(cli("user", "create", "bill", "--workspace", "globex", "--role", "billing",
                        "--json"))  # fmt: skip
    bill = _json(cli("whoami", "--json", token=created["token"]))
    assert bill["workspaces"]["globex"]["permissions"] == ["billing.view"]

    # disabling a user stops every token of theirs
    _json(cli("user", "disable", "bill", "--json"))
    code, _, err = cli("whoami", token=created["token"])
    assert code == EXIT_REFUSED and "disabled" in err
    # the last owner cannot be removed
    code, _, err = cli("user", "revoke-role", "olivia", "--workspace", "globex")
    assert code == EXIT_REFUSED and "last owner" in err

    code, out, err = cli("logout")
    assert code == 0, err
    assert not path.exists()
    code, _, err = cli("whoami")
    assert code == EXIT_REFUSED and "not logged in" in err

    actions = [(e["action"], e["outcome"], e["actor"]["id"]) for e in _events(settings)]
    assert ("auth.login", "DENIED", "token:0123456789ab") in actions
    assert ("auth.login", "SUCCESS", "olivia") in actions
    assert ("auth.logout", "SUCCESS", "olivia") in actions
    assert ("role.create", "SUCCESS", "olivia") in actions
    assert ("user.disable", "SUCCESS", "olivia") in actions
