"""Who may run which command, through the real entry point against the test broker: workspace
policy changes, key operations, queries and the audit trail, for token holders of each role,
of another workspace, and for the platform operator (no token). Refusals are audited DENIED."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from callvault.settings import Settings
from tests.callvault.cli.helpers import control_settings, ok_json, refused
from tests.callvault.control.keyenv import audit_events

pytestmark = pytest.mark.integration

TOPICS = ("control.identities", "control.workspaces", "control.keys", "audit.events",
          "audit.chain.eu")  # fmt: skip


@pytest.fixture
def settings(stack_settings: Settings, tmp_path: Path) -> Settings:
    return control_settings(stack_settings, tmp_path, "a", TOPICS, {"acme": "eu", "globex": "eu"})


def test_commands_check_the_role_in_the_workspace(settings, cli, users):
    tokens = users("acme", olivia="owner", mia="member", aud="auditor")
    owner, member, auditor = tokens["olivia"], tokens["mia"], tokens["aud"]

    # workspace policy: retention is the owner's; per-agent recording is agent configuration
    refused(cli("workspace", "set", "acme", "--retention-days", "30", token=member),
             "lacks workspace.manage")  # fmt: skip
    changed = ok_json(cli("workspace", "set", "acme", "--agent-recording", "bot-7=off", "--json",
                        token=member))  # fmt: skip
    assert changed[0]["agent_recording"] == {"bot-7": False}
    assert ok_json(cli("workspace", "set", "acme", "--retention-days", "30", "--json",
                     token=owner))[0]["retention_days"] == 30  # fmt: skip
    refused(cli("workspace", "set", "globex", "--retention-days", "30", token=owner),
             "not a member of workspace 'globex'")  # fmt: skip
    # creating workspaces, master keys: the platform operator's, never a workspace role's
    refused(cli("workspace", "create", "newco", "--region", "eu", token=owner), "operator")
    refused(cli("keys", "init", token=owner), "operator")
    refused(cli("keys", "rotate-master", token=owner), "operator")
    # a token holder sees only their workspaces
    assert [p["workspace_id"] for p in ok_json(cli("workspace", "list", "--json", token=member))] \
        == ["acme"]  # fmt: skip
    refused(cli("workspace", "get", "globex", token=member), "not a member")
    assert len(ok_json(cli("workspace", "list", "--json"))) == 2  # the operator sees all

    # keys: shredding needs erasure.execute / workspace.manage; listing needs audit.read
    refused(cli("keys", "shred-call", "acme", "c-1", "--yes", token=member),
             "lacks erasure.execute")  # fmt: skip
    refused(cli("keys", "shred-workspace", "acme", "--yes", token=member),
             "lacks workspace.manage")  # fmt: skip
    refused(cli("keys", "list", token=auditor), "--workspace is required")
    assert ok_json(cli("keys", "list", "--workspace", "acme", "--json", token=auditor)) == []
    refused(cli("keys", "list", "--workspace", "acme", token=member), "lacks audit.read")
    shred = ok_json(cli("keys", "shred-call", "acme", "c-1", "--yes", "--json", token=owner))
    assert shred["marker_key_id"]  # no key yet: a marker so none can be minted later

    # queries are per workspace for token holders
    refused(cli("query", "SELECT 1", token=member), "--workspace is required")
    refused(cli("query", "--workspace", "globex", "SELECT 1", token=member), "not a member")

    # the audit trail: audit.read, and a token holder exports one workspace's part
    refused(cli("audit", "export", token=auditor), "--workspace is required")
    refused(cli("audit", "export", "--workspace", "acme", token=member), "lacks audit.read")
    refused(cli("audit", "verify", token=member), "lacks audit.read")
    # the auditor passes the gate (and this test home has no chain key to verify with)
    refused(cli("audit", "verify", token=auditor), "no audit public key")

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
