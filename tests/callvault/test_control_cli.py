"""``callvault topics`` and ``callvault workspace`` against the real broker, through the console
script a user runs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from callvault.control.workspaces import WorkspaceDirectory, workspace_view
from callvault.settings import Settings, settings_env
from callvault.topics import Topics, admin_client, describe_topic_configs, ensure_topics
from tests.conftest import topic_prefix

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(stack_settings: Settings, tmp_path) -> Settings:
    prefix = topic_prefix("c")
    return stack_settings.model_copy(
        update={
            "home": tmp_path,
            "kafka": stack_settings.kafka.model_copy(update={"topic_prefix": prefix}),
        }
    )


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings_env(settings)}
    # this interpreter's callvault, never whichever one happens to be first on PATH
    return subprocess.run(
        [sys.executable, "-m", "callvault", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_topics_ensure_creates_verifies_and_restores_drift(settings):
    first = cli(settings, "topics", "ensure", "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    names = {s.name for s in Topics(settings).specs.values()}
    assert set(report["created"]) == names

    async def drift() -> None:
        admin = admin_client(settings)
        await admin.start()
        try:
            await admin.alter_configs(
                [
                    ConfigResource(
                        ConfigResourceType.TOPIC,
                        Topics(settings).ingest_metadata,
                        {"retention.ms": "999999999"},
                    )
                ]
            )
        finally:
            await admin.close()

    asyncio.run(drift())
    second = json.loads(cli(settings, "topics", "ensure", "--json").stdout)
    assert second["created"] == []
    assert second["updated"] == [Topics(settings).ingest_metadata]
    t = Topics(settings)
    audit_trail = [t.audit_events, t.audit_chain("eu"), t.siem_ocsf]
    configs = asyncio.run(
        describe_topic_configs(settings, [t.ingest_metadata, t.control_workspaces, *audit_trail])
    )
    assert configs[t.ingest_metadata]["retention.ms"] == str(24 * 3600 * 1000)
    assert configs[t.control_workspaces]["cleanup.policy"] == "compact"
    # "logs are retained for 1 year minimum": as the broker holds them, not as the code says
    for topic in audit_trail:
        assert int(configs[topic]["retention.ms"]) >= 366 * 24 * 3600 * 1000, topic
        assert configs[topic]["cleanup.policy"] == "delete", topic


def test_workspace_lifecycle_and_clear_refusals(settings):
    assert cli(settings, "topics", "ensure").returncode == 0
    created = cli(settings, "workspace", "create", "acme", "--region", "eu", "--json")
    assert created.returncode == 0, created.stderr
    policy = json.loads(created.stdout)[0]
    assert policy["retention_days"] == 90  # the spec's defaults: 90 days, recording on
    assert policy["recording_default"] is True and policy["agent_recording"] == {}

    dup = cli(settings, "workspace", "create", "acme", "--region", "eu")
    assert dup.returncode == 3 and "already exists" in dup.stderr

    bad = cli(settings, "workspace", "create", "beta", "--region", "eu", "--retention-days", "400")
    assert bad.returncode == 2 and "400 is not in the range 7<=x<=365" in bad.stderr

    mars = cli(settings, "workspace", "create", "beta", "--region", "mars")
    assert mars.returncode == 3 and "region 'mars' is not one of eu, na, apac" in mars.stderr

    changed = cli(
        settings,
        "workspace",
        "set",
        "acme",
        "--retention-days",
        "30",
        "--agent-recording",
        "agent-7=off",
        "--json",
    )
    assert changed.returncode == 0, changed.stderr
    policy = json.loads(changed.stdout)[0]
    assert (policy["retention_days"], policy["version"]) == (30, 2)
    assert policy["agent_recording"] == {"agent-7": False}

    listed = json.loads(cli(settings, "workspace", "list", "--json").stdout)
    assert [p["workspace_id"] for p in listed] == ["acme"]

    missing = cli(settings, "workspace", "get", "nope")
    assert missing.returncode == 3 and "does not exist" in missing.stderr


async def test_view_sync_sees_a_write_made_elsewhere(settings):
    await ensure_topics(settings)
    view = workspace_view(settings)
    await view.start()
    try:
        assert view.get("acme") is None
        async with WorkspaceDirectory(settings) as directory:
            await directory.create("acme", region="na", retention_days=10)
        await view.sync()
        policy = view.get("acme")
        assert policy is not None and policy.region == "na" and policy.retention_days == 10
    finally:
        await view.stop()


async def test_region_of_a_workspace_cannot_be_flipped(settings):
    from callvault.errors import ControlError

    await ensure_topics(settings)
    async with WorkspaceDirectory(settings) as directory:
        await directory.create("acme", region="eu")
        with pytest.raises(ControlError, match="requires a migration"):
            await directory.update("acme", region="na")
