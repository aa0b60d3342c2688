"""``callvault extension`` through the real entry point against the test broker: who may add,
change and remove extensions (extensions.manage, in the extension's workspace only), what is
refused and why, and the audit trail every change and refusal leaves."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from callvault.control.extensions import ExtensionDirectory
from callvault.settings import Settings
from tests.callvault.cli.helpers import control_settings, ok_json, refused
from tests.callvault.control.keyenv import audit_events

pytestmark = pytest.mark.integration

TOPICS = ("control.identities", "control.workspaces", "control.extensions", "audit.events")


@pytest.fixture
def settings(stack_settings: Settings, tmp_path: Path) -> Settings:
    return control_settings(stack_settings, tmp_path, "x", TOPICS, {"acme": "eu", "globex": "eu"})


def test_owner_manages_extensions_member_and_other_workspacesrefused(settings, cli, users):
    tokens = users("acme", olivia="owner", mia="member")
    owner, member = tokens["olivia"], tokens["mia"]

    # the owner adds (the number is stored without the spaces people type), changes, lists
    added = ok_json(cli("extension", "add", "+44 20 7183 8750", "--workspace", "acme", "--agent",
                      "bot-7", "--label", "front desk", "--json", token=owner))  # fmt: skip
    assert added["extension"] == "+442071838750" and added["agent_id"] == "bot-7"
    assert (added["version"], added["updated_by"]) == (1, "olivia")
    assert ok_json(cli("extension", "add", "201", "--workspace", "acme", "--agent", "bot-1",
                     "--json", token=owner))["label"] is None  # fmt: skip
    updated = ok_json(cli("extension", "set", "201", "--workspace", "acme", "--agent", "bot-2",
                        "--json", token=owner))  # fmt: skip
    assert (updated["agent_id"], updated["version"]) == ("bot-2", 2)
    listed = ok_json(cli("extension", "list", "--workspace", "acme", "--json", token=member))
    assert [(e["extension"], e["agent_id"]) for e in listed] == [
        ("+442071838750", "bot-7"), ("201", "bot-2")]  # fmt: skip

    # refusals: the wrong role, the wrong workspace, duplicates, missing and invalid extensions
    refused(cli("extension", "add", "202", "--workspace", "acme", "--agent", "bot-1",
                 token=member), "lacks extensions.manage")  # fmt: skip
    refused(cli("extension", "remove", "201", "--workspace", "acme", token=member),
             "lacks extensions.manage")  # fmt: skip
    refused(cli("extension", "add", "201", "--workspace", "globex", "--agent", "bot-1",
                 token=owner), "not a member of workspace 'globex'")  # fmt: skip
    refused(cli("extension", "list", "--workspace", "globex", token=owner), "not a member")
    refused(cli("extension", "add", "201", "--workspace", "acme", "--agent", "bot-9",
                 token=owner), "already exists")  # fmt: skip
    refused(cli("extension", "remove", "999", "--workspace", "acme", token=owner),
             "does not exist")  # fmt: skip
    refused(cli("extension", "set", "999", "--workspace", "acme", "--agent", "x",
                 token=owner), "does not exist")  # fmt: skip
    refused(cli("extension", "add", "20/1", "--workspace", "acme", "--agent", "bot-1",
                 token=owner), "must be 2-32 characters")  # fmt: skip
    refused(cli("extension", "add", "203", "--workspace", "acme", "--agent", "bad agent",
                 token=owner), "agent id")  # fmt: skip
    code, _, err = cli("extension", "set", "201", "--workspace", "acme", token=owner)
    assert code == 2 and "nothing to change" in err
    # the platform operator (no token) may act in any workspace, refusals are the same
    ok_json(cli("extension", "add", "301", "--workspace", "globex", "--agent", "g-1", "--json"))
    refused(cli("extension", "add", "3", "--workspace", "nowhere", "--agent", "a"),
             "must be 2-32")  # fmt: skip
    refused(cli("extension", "add", "30", "--workspace", "nowhere", "--agent", "a"),
             "workspace 'nowhere' does not exist")  # fmt: skip

    # removal is a tombstone: gone from the list and from lookups
    removed = ok_json(cli("extension", "remove", "201", "--workspace", "acme", "--json",
                        token=owner))  # fmt: skip
    assert removed["agent_id"] == "bot-2"
    left = ok_json(cli("extension", "list", "--workspace", "acme", "--json", token=owner))
    assert [e["extension"] for e in left] == ["+442071838750"]

    async def lookups() -> tuple[Any, Any, Any]:
        async with ExtensionDirectory(settings) as d:
            return (d.lookup("acme", "201"), d.lookup("acme", "%2B442071838750"),
                    d.lookup("globex", "+442071838750"))  # fmt: skip

    gone, by_escaped_uri_user, other_workspace = asyncio.run(lookups())
    assert gone is None and other_workspace is None
    assert by_escaped_uri_user is not None and by_escaped_uri_user.agent_id == "bot-7"

    events = asyncio.run(audit_events(settings))
    mine = [e for e in events if e["action"].startswith("extension.")]
    seen = {(e["action"], e["outcome"], e["actor"]["id"], e["target"]) for e in mine}
    assert ("extension.add", "SUCCESS", "olivia", "extension:acme/+442071838750") in seen
    assert ("extension.update", "SUCCESS", "olivia", "extension:acme/201") in seen
    assert ("extension.remove", "SUCCESS", "olivia", "extension:acme/201") in seen
    # refusals are audited DENIED, as whoever tried, in the workspace they tried
    denied = {(e["action"], e["actor"]["id"], e["workspace_id"])
              for e in mine if e["outcome"] == "DENIED"}  # fmt: skip
    assert {("extension.add", "mia", "acme"), ("extension.remove", "mia", "acme"),
            ("extension.add", "olivia", "globex")} <= denied  # fmt: skip
    update = next(e for e in mine if e["action"] == "extension.update")
    assert update["details"] == {"agent_id": "bot-2", "label": "", "version": "2"}
    assert update["workspace_id"] == "acme" and update["region"] == "eu"
