"""An ingest node running in the test's event loop on the real Kafka test stack, with its own
topic prefix, ports, workspace and trunk credential."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from callvault.control.trunks import IssuedCredential, TrunkDirectory
from callvault.control.workspaces import WorkspaceDirectory
from callvault.settings import Settings
from callvault.topics import ensure_topics
from sip_ingest.node import IngestNode
from tests.ports import free_port, rtp_port_range
from tests.streams.conftest import isolated_settings

free_udp_port = free_port  # sipp's signalling and media ports


@dataclass
class NodeEnv:
    settings: Settings
    node: IngestNode
    trunk: IssuedCredential
    workdir: Path

    @property
    def sip(self) -> tuple[str, int]:
        return ("127.0.0.1", self.settings.ingest.sip_port)


def node_settings(base: Settings, tmp: Path, **ingest: object) -> Settings:
    settings = isolated_settings(base, tmp)
    rtp_min, rtp_max = rtp_port_range()
    return settings.model_copy(
        update={
            "ingest": settings.ingest.model_copy(
                update={
                    "sip_port": free_port(),  # UDP and TCP
                    "api_port": free_port(),
                    "rtp_port_min": rtp_min,
                    "rtp_port_max": rtp_max,
                    "journal_dir": tmp / "journal",
                    "nonce_secret": SecretStr("test-nonce-secret-0123456789"),
                    # sipp answers only the first challenge and only knows MD5
                    "digest_algorithms": ("MD5", "SHA-256"),
                    **ingest,
                }
            )
        }
    )


async def start_node(settings: Settings, tmp: Path) -> NodeEnv:
    await ensure_topics(settings)
    async with WorkspaceDirectory(settings) as d:
        await d.create("acme", region="eu", retention_days=30)
    async with TrunkDirectory(settings, actor="test") as t:
        trunk = await t.create("acme", "pbx1")
    node = IngestNode(settings)
    await node.start()
    return NodeEnv(settings, node, trunk, tmp)


@pytest.fixture
async def node_env(stack_settings: Settings, tmp_path: Path) -> AsyncIterator[NodeEnv]:
    env = await start_node(node_settings(stack_settings, tmp_path), tmp_path)
    try:
        yield env
    finally:
        await env.node.stop()
