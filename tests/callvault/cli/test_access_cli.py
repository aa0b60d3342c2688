"""Who may run which command, through the real entry point against the test broker: workspace
policy changes, key operations, queries and the audit trail, for token holders of each role,
of another workspace, and for the platform operator (no token). Refusals are audited DENIED."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from callvault.cli.main import EXIT_REFUSED
from callvault.control.workspaces import WorkspaceDirectory
from callvault.settings import Settings
from callvault.topics import Topics, ensure_topics
from tests.callvault.cli.test_identity_cli import _json
from tests.callvault.control.keyenv import audit_events
from tests.conftest import topic_prefix

pytestmark = pytest.mark.integration

TOPICS = ("control.identities", "control.workspaces", "control.keys", "audit.events",
          "audit.chain.eu")  # fmt: skip


@pytest.fixture
def settings(stack_settings: Settings, tmp_path: Path) -> Settings:
    settings = stack_settings.model_copy(
        update={
            "home": tmp_path / "home",
            "kafka": stack_settings.kafka.model_copy(update={"topic_prefix": topic_prefix("a")}),
        }
    )

    async def setup() -> None:
        topics = Topics(settings)
        await ensure_topics(settings, [topics.specs[name] for name in TOPICS])
        async with WorkspaceDirectory(settings) as d:
            await d.create("acme", region="eu")
            await d.create("globex", region="eu")

    asyncio.run(setup())
    return settings


def _refused(result: tuple[int, str, str], *needles: str) -> None:
    code, _, err = result
    assert code == EXIT_REFUSED, err
    for needle in needles:
        assert needle in err, err


def test_commands_check_the_role_in_the_workspace(settings, cli, users):
    tokens = users("acme", olivia="owner", mia="member", aud="auditor")
    owner, member, auditor = tokens["olivia"], tokens["mia"], tokens["aud"]

    # workspace policy: retention is the owner's; per-agent recording is agent configuration
    _refused(cli("workspace", "set", "acme", "--retention-days", "30", token=member),
             "lacks workspace.manage")  # fmt: skip
    changed = _json(cli("workspace", "set", "acme", "--agent-recording", "bot-7=off", "--json",
                        token=member))  # fmt: skip
    assert changed[0]["agent_recording"] == {"bot-7": False}
    assert _json(cli("workspace", "set", "acme", "--retention-days", "30", "--json",
                     token=owner))[0]["retention_days"] == 30  # fmt: skip
    _refused(cli("workspace", "set", "globex", "--retention-days", "30", token=owner),
             "not a member of workspace 'globex'")  # fmt: skip
    # creating workspaces, master keys: the platform operator's, never a workspace role's
    _refused(cli("workspace", "create", "newco", "--region", "eu", token=owner), "operator")
    _refused(cli("keys", "init", token=owner), "operator")
    _refused(cli("keys", "rotate-master", token=owner), "operator")
    # a token holder sees only their workspaces
    assert [p["workspace_id"] for p in _json(cli("workspace", "list", "--json", token=member))] \
        == ["acme"]  # fmt: skip
    _refused(cli("workspace", "get", "globex", token=member), "not a member")
    assert len(_json(cli("workspace", "list", "--json"))) == 2  # the operator sees all

    # keys: shredding needs erasure.execute / workspace.manage; listing needs audit.read
    _refused(cli("keys", "shred-call", "acme", "c-1", "--yes", token=member),
             "lacks erasure.execute")  # fmt: skip
    _refused(cli("keys", "shred-workspace", "acme", "--yes", token=member),
             "lacks workspace.manage")  # fmt: skip
    _refused(cli("keys", "list", token=auditor), "--workspace is required")
    assert _json(cli("keys", "list", "--workspace", "acme", "--json", token=auditor)) == []
    _refused(cli("keys", "list", "--workspace", "acme", token=member), "lacks audit.read")
    shred = _json(cli("keys", "shred-call", "acme", "c-1", "--yes", "--json", token=owner))
    assert shred["marker_key_id"]  # no key yet: a marker so none can be minted later

    # queries are per workspace for token holders
    _refused(cli("query", "SELECT 1", token=member), "--workspace is required")
    _refused(cli("query", "--workspace", "globex", "SELECT 1", token=member), "not a member")

    # the audit trail: audit.read, and a token holder exports one workspace's part
    _refused(cli("audit", "export", token=auditor), "--workspace is required")
    _refused(cli("audit", "export", "--workspace", "acme", token=member), "lacks audit.read")
    _refused(cli("audit", "verify", token=member), "lacks audit.read")
    # the auditor passes the gate (and this test home has no chain key to verify with)
    _refused(cli("audit", "verify", token=auditor), "no audit public key")

    events = asyncio.run(audit_events(settings))
    seen = {(e["action"], e["outcome"], e["actor"]["id"]) for e in events}
    assert ("workspace.update", "SUCCESS", "mia") in seen
    assert ("workspace.update", "SUCCESS", "olivia") in seen
    assert ("workspace.update", "DENIED", "mia") in seen
    assert ("key.call.shred", "DENIED", "mia") in seen
    assert ("key.call.shred", "SUCCESS", "olivia") in seen
    assert ("calls.query", "DENIED", "mia") in seen
    assert ("audit.export", "DENIED", "mia") in seen
    assert ("audit.verify", "DENIED", "mia") in seen
