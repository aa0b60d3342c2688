"""The ingest node process: SIP transports + UAS + RTP media + Kafka publisher + agent API.

Control state (trunk credentials, workspace policies, extensions) comes from live views of the
compacted control topics, so a revoked credential is refused as soon as this node has read the
revocation, and a call to an extension reaches the agent it points to now.
Everything the node produces leaves through the :class:`Publisher`, which never blocks the media
loop and spools to disk while Kafka is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter

from callvault.control.extensions import extension_view, lookup_in
from callvault.control.trunks import TrunkCredential, trunk_view
from callvault.control.workspaces import WorkspacePolicy, workspace_view
from callvault.settings import Settings
from callvault.topics import Topics
from sip_ingest.media_bridge import MediaBridge
from sip_ingest.publish.publisher import Publisher
from sip_ingest.transport import StreamServer, UdpTransport
from sip_ingest.uas import IngestUAS

log = structlog.get_logger(__name__)


class NodeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "callvault_ingest_events", "Call-layer events", ["event", "label"], registry=registry
        )

    def count(self, metric: str, **labels: str) -> None:
        label = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        self.events.labels(metric, label).inc()


class IngestNode:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self.metrics = NodeMetrics(self.registry)
        self.topics = Topics(settings)
        self.publisher = Publisher(settings, self.registry)
        # revocations and erasures also end the calls in progress (IngestUAS._terminate)
        self.trunks = trunk_view(settings, on_change=self._trunk_changed)
        self.workspaces = workspace_view(settings, on_change=self._workspace_changed)
        # dialled extension -> agent: a change applies to calls set up after it, not to calls
        # in progress (their recording decision was made, and published, at setup)
        self.extensions = extension_view(settings)
        self.media = MediaBridge(
            settings,
            publish_chunk=self._publish_chunk,
            count_suppressed=lambda: self.metrics.count("audio_chunk_suppressed"),
        )
        self.uas = IngestUAS(
            settings,
            trunk_lookup=self._trunk,
            trunk_by_id=self._active_trunk,
            policy_lookup=self._policy,
            extension_lookup=self._extension_agent,
            media=self.media,
            sink=self,
        )
        self._udp: asyncio.DatagramTransport | None = None
        self._streams: list[StreamServer] = []
        self._api: Any = None

    # -- Sink (what the UAS emits) -----------------------------------------------------------

    def call_event(self, record: dict[str, Any]) -> None:
        self.publisher.publish_avro(
            self.topics.ingest_metadata, record["call_id"].encode(), "CallEvent", record
        )

    def audit(self, record: dict[str, Any]) -> None:
        key = (record.get("workspace_id") or "-").encode()
        self.publisher.publish_avro(self.topics.audit_events, key, "AuditEvent", record)

    def count(self, metric: str, **labels: str) -> None:
        self.metrics.count(metric, **labels)

    def _publish_chunk(self, record: dict[str, Any]) -> None:
        self.publisher.publish_avro(
            self.topics.name("ingest.audio"), record["call_id"].encode(), "AudioChunk", record
        )

    def _trunk(self, username: str) -> TrunkCredential | None:
        return self.trunks.get(username)

    def _active_trunk(self, trunk_id: str) -> TrunkCredential | None:
        return next(
            (c for c in self.trunks.items().values() if c.trunk_id == trunk_id and c.active), None
        )

    def _trunk_changed(self, _username: str, cred: TrunkCredential | None) -> None:
        if cred is not None:
            self.uas.credential_changed(cred)

    def _workspace_changed(self, _workspace_id: str, policy: WorkspacePolicy | None) -> None:
        if policy is not None:
            self.uas.workspace_changed(policy)

    def _policy(self, workspace_id: str) -> WorkspacePolicy | None:
        return self.workspaces.get(workspace_id)

    def _extension_agent(self, workspace_id: str, dialled: str) -> str | None:
        ext = lookup_in(self.extensions, workspace_id, dialled)
        return ext.agent_id if ext is not None else None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.settings.ingest
        await self.publisher.start()
        await self.trunks.start()
        await self.workspaces.start()
        await self.extensions.start()
        self.uas.start()
        loop = asyncio.get_running_loop()
        drop = lambda reason: self.metrics.count("sip_dropped", reason=reason)  # noqa: E731
        udp, _ = await loop.create_datagram_endpoint(
            lambda: UdpTransport(self.uas.handle, drop), local_addr=(cfg.sip_host, cfg.sip_port)
        )
        self._udp = udp
        if cfg.tcp_enabled:
            tcp = StreamServer("TCP", self.uas.handle, drop)
            await tcp.start(cfg.sip_host, cfg.sip_port)
            self._streams.append(tcp)
        if cfg.tls_cert_file is not None and cfg.tls_key_file is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(cfg.tls_cert_file, cfg.tls_key_file)
            tls = StreamServer("TLS", self.uas.handle, drop, ssl_context=ctx)
            await tls.start(cfg.sip_host, cfg.tls_port)
            self._streams.append(tls)
        await self._start_api()
        log.info(
            "ingest_node_ready",
            node=cfg.node_id,
            sip=f"{cfg.sip_host}:{cfg.sip_port}",
            tls=cfg.tls_cert_file is not None,
            api=f"{cfg.api_host}:{cfg.api_port}",
        )

    async def _start_api(self) -> None:
        from sip_ingest.api.server import IngestApi

        self._api = IngestApi(self.settings, self.publisher, self.uas, self.registry)
        await self._api.start()

    async def stop(self) -> None:
        await self.uas.stop()
        if self._udp is not None:
            self._udp.close()
        for server in self._streams:
            await server.close()
        if self._api is not None:
            with contextlib.suppress(Exception):
                await self._api.stop()
        await self.trunks.stop()
        await self.workspaces.stop()
        await self.extensions.stop()
        await self.publisher.stop()


async def run_node(settings: Settings) -> None:
    node = IngestNode(settings)
    await node.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await node.stop()
