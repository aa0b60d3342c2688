"""Every Kafka topic Callvault uses, with the configuration it must have.

Topic configs are part of the product's promises (raw ingest data is short-lived, control topics
are compacted, sealed topics live as long as the longest workspace retention), so the project
creates and verifies them itself instead of trusting broker defaults or faust's auto-declare.
Names are built here and nowhere else, with the settings' ``topic_prefix`` in front.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from callvault.errors import ControlError, KafkaUnavailable
from callvault.kafka_client import kafka_options
from callvault.settings import Settings

DAY_MS = 24 * 3600 * 1000

#: Compacted control topics keep the latest record per key forever, but a tombstone (a deleted
#: trunk or a shredded key) must not linger: ``max.compaction.lag.ms`` bounds how long an
#: overwritten or deleted value can still be read from the log, ``delete.retention.ms`` how long
#: the tombstone itself stays for slow readers.
_COMPACTED = {
    "cleanup.policy": "compact",
    "min.cleanable.dirty.ratio": "0.1",
    "segment.ms": str(3600 * 1000),
    "max.compaction.lag.ms": str(DAY_MS),
    "delete.retention.ms": str(DAY_MS),
}


@dataclass(frozen=True)
class TopicSpec:
    logical: str
    name: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)


class Topics:
    """The topic map of one deployment (or one test: each test has its own prefix)."""

    def __init__(self, settings: Settings) -> None:
        self._prefix = settings.kafka.topic_prefix
        ingest_ms = settings.kafka.ingest_retention_hours * 3600 * 1000
        # Sealed data must outlive the longest possible workspace retention; expiry inside that
        # window is enforced by crypto-shredding, not by Kafka deleting segments.
        sealed_ms = 366 * DAY_MS
        audit_ms = 400 * DAY_MS  # audit logs are kept at least one year
        specs = [
            self._spec("ingest.metadata", 3, {"retention.ms": str(ingest_ms)}),
            self._spec("ingest.audio", 3, {"retention.ms": str(ingest_ms)}),
            self._spec("ingest.transcript", 3, {"retention.ms": str(ingest_ms)}),
            self._spec("sealed.metadata", 3, {"retention.ms": str(sealed_ms)}),
            self._spec("sealed.audio", 3, {"retention.ms": str(sealed_ms)}),
            self._spec("sealed.transcript", 3, {"retention.ms": str(sealed_ms)}),
            self._spec("audit.events", 1, {"retention.ms": str(audit_ms)}),
            # each region's hash-chained, signed audit trail (streams/audit_chain.py): one
            # partition, so the chain has one order
            *(
                self._spec(f"audit.chain.{region}", 1, {"retention.ms": str(audit_ms)})
                for region in settings.regions
            ),
            # the audit trail as OCSF JSON for SIEMs that read Kafka: an audit log like its source
            self._spec("siem.ocsf", 1, {"retention.ms": str(audit_ms)}),
            # content dead letters (audio, transcript) never hold the content: see streams
            self._spec("deadletter.metadata", 1, {"retention.ms": str(30 * DAY_MS)}),
            self._spec("deadletter.audio", 1, {"retention.ms": str(30 * DAY_MS)}),
            self._spec("deadletter.transcript", 1, {"retention.ms": str(30 * DAY_MS)}),
            # audit events a SIEM refused (replayable to the SIEMs alone)
            self._spec("deadletter.siem", 1, {"retention.ms": str(30 * DAY_MS)}),
            self._spec("control.workspaces", 1, _COMPACTED),
            self._spec("control.trunks", 1, _COMPACTED),
            # dialled extension -> AI agent, keyed "<workspace>/<extension>"; removal is a
            # tombstone (callvault/control/extensions.py)
            self._spec("control.extensions", 1, _COMPACTED),
            self._spec("control.keys", 1, _COMPACTED),
            self._spec("control.erasure", 1, _COMPACTED),
            # signed deletion certificates, keyed by the erasure request they complete
            self._spec("control.certificates", 1, _COMPACTED),
            # users, API token digests and custom roles (callvault/control/identity.py)
            self._spec("control.identities", 1, _COMPACTED),
        ]
        self.specs: dict[str, TopicSpec] = {s.logical: s for s in specs}

    def _spec(self, logical: str, partitions: int, config: Mapping[str, str]) -> TopicSpec:
        return TopicSpec(logical, self._prefix + logical, partitions, dict(config))

    def name(self, logical: str) -> str:
        try:
            return self.specs[logical].name
        except KeyError:
            raise ControlError(f"unknown topic {logical!r}") from None

    # The names code uses most, spelled out so typos fail at attribute lookup, not at runtime.
    @property
    def ingest_metadata(self) -> str:
        return self.name("ingest.metadata")

    @property
    def sealed_metadata(self) -> str:
        return self.name("sealed.metadata")

    @property
    def deadletter_metadata(self) -> str:
        return self.name("deadletter.metadata")

    @property
    def control_workspaces(self) -> str:
        return self.name("control.workspaces")

    @property
    def audit_events(self) -> str:
        return self.name("audit.events")

    def audit_chain(self, region: str) -> str:
        """``audit.chain.<region>``: that region's hash-chained, signed audit trail."""
        return self.name(f"audit.chain.{region}")

    @property
    def siem_ocsf(self) -> str:
        return self.name("siem.ocsf")

    @property
    def deadletter_siem(self) -> str:
        return self.name("deadletter.siem")


@dataclass(frozen=True)
class EnsureReport:
    created: list[str]
    updated: list[str]
    unchanged: list[str]


def admin_client(settings: Settings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        **kafka_options(settings),
        client_id="callvault-admin",
        request_timeout_ms=int(settings.kafka.request_timeout_s * 1000),
    )


async def ensure_topics(
    settings: Settings, specs: Iterable[TopicSpec] | None = None
) -> EnsureReport:
    """Create missing topics and bring the config of existing ones back to the spec.

    Partition counts are only checked: shrinking is impossible and growing changes key->partition
    mapping, which must be an explicit operator decision.
    """
    wanted = list(specs if specs is not None else Topics(settings).specs.values())
    admin = admin_client(settings)
    try:
        await admin.start()
    except KafkaError as exc:
        raise KafkaUnavailable(f"cannot reach Kafka at {settings.kafka.bootstrap}: {exc}") from exc
    try:
        existing = set(await admin.list_topics())
        created, updated, unchanged = [], [], []
        missing = [s for s in wanted if s.name not in existing]
        if missing:
            new = [NewTopic(s.name, s.partitions, 1, topic_configs=dict(s.config)) for s in missing]
            try:
                resp = await admin.create_topics(new)
            except TopicAlreadyExistsError:  # raced with another creator: verified below
                resp = None
            for name, code, *_ in getattr(resp, "topic_errors", []) or []:
                if code not in (0, 36):  # 36 = TOPIC_ALREADY_EXISTS
                    raise ControlError(f"cannot create topic {name}: Kafka error code {code}")
            created = [s.name for s in missing]
            await _await_leaders(admin, created, settings.kafka.request_timeout_s)
        present = [s for s in wanted if s.name not in created]
        if present:
            actual = await _describe(admin, [s.name for s in present])
            drifted = [s for s in present if not _matches(s.config, actual.get(s.name, {}))]
            if drifted:
                await admin.alter_configs(
                    [
                        ConfigResource(ConfigResourceType.TOPIC, s.name, dict(s.config))
                        for s in drifted
                    ]
                )
            updated = [s.name for s in drifted]
            unchanged = [s.name for s in present if s not in drifted]
        return EnsureReport(created, updated, unchanged)
    except KafkaError as exc:
        raise KafkaUnavailable(f"topic administration failed: {exc}") from exc
    finally:
        await admin.close()


async def _await_leaders(admin: AIOKafkaAdminClient, names: list[str], timeout_s: float) -> None:
    """Return once every partition of ``names`` has a leader.

    CreateTopics answers before the new partitions are served; a client that reads metadata in
    that window sees no partitions and would conclude the topic does not exist.
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    pending = set(names)
    while pending:
        for info in await admin.describe_topics(sorted(pending)):
            parts = info["partitions"]
            if info["error_code"] == 0 and parts and all(p["leader"] >= 0 for p in parts):
                pending.discard(info["topic"])
        if pending:
            if asyncio.get_running_loop().time() > deadline:
                raise KafkaUnavailable(
                    f"topics without a leader after {timeout_s}s: {sorted(pending)}"
                )
            await asyncio.sleep(0.05)


async def describe_topic_configs(settings: Settings, names: list[str]) -> dict[str, dict[str, str]]:
    admin = admin_client(settings)
    await admin.start()
    try:
        return await _describe(admin, names)
    finally:
        await admin.close()


async def _describe(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
    )
    out: dict[str, dict[str, str]] = {}
    for resp in responses:
        for resource in resp.resources:
            # (error_code, error_message, resource_type, resource_name, config_entries)
            name, entries = resource[3], resource[4]
            out[name] = {e[0]: e[1] for e in entries}
    return out


def _matches(spec: Mapping[str, str], actual: Mapping[str, Any]) -> bool:
    return all(str(actual.get(k)) == v for k, v in spec.items())


async def topic_partitions(consumer: Any, topic: str) -> list[int]:
    """Partitions of ``topic`` as the broker knows them now.

    aiokafka fills its metadata lazily, so ``partitions_for_topic`` answers ``None`` for a topic the
    consumer never subscribed to, and ``topics()`` fetches fresh metadata without keeping it; so
    we read the partitions from that fresh metadata (aiokafka's client, the one private reach).
    """
    cluster = await consumer._client.fetch_all_metadata()
    return sorted(cluster.partitions_for_topic(topic) or ())
